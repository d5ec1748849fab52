package main

// The policy-state bench: acceptance with greylisting and rate limits,
// the state on this host (greylist triplets in bbolt, rate counts in
// gw-smtpd's memory) and shared in a redis-server on loopback, in the
// same run. Each client session repeats MAIL, ten RCPTs to new
// recipients (each one a greylist check that records a first try, and a
// RATE_MSG/RATE_RCPT count high enough never to refuse) and RSET, so the
// figure is the policy's cost, not the queue's. Cost per RCPT is the CPU
// of gw-smtpd, plus redis-server's on the shared side, over the
// recipients answered.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func fleetBench(work string) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Println("\nfleet: skipped, redis-server is not installed (scripts/test-peers.sh)")
		return
	}
	fmt.Printf("\npolicy state: greylisting + rate limits, 10 RCPTs a transaction, 4 sessions\n")
	raddr := freePort()
	_, rport, _ := net.SplitHostPort(raddr)
	redis := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", rport, "--save", "", "--appendonly", "no", "--dir", work)
	check(redis.Start())
	defer func() { redis.Process.Kill(); redis.Wait() }()
	check(waitListening(raddr, 5*time.Second))

	bolt, boltCPU := fleetMeasure(work, "bbolt", "", nil)
	shared, sharedCPU := fleetMeasure(work, "redis", raddr, redis.Process)
	fmt.Printf("  %-8s %10s RCPT/s  %8.1f µs CPU per RCPT\n", "bbolt", num(bolt, "%.0f"), boltCPU)
	fmt.Printf("  %-8s %10s RCPT/s  %8.1f µs CPU per RCPT (gw-smtpd + redis-server)\n", "redis", num(shared, "%.0f"), sharedCPU)
	verdict := "ok"
	if shared < 0.8*bolt {
		verdict = "BELOW the 80 % goal"
	}
	fmt.Printf("  redis/bbolt: %s (%s)\n", ratio(shared, bolt), verdict)
}

// fleetMeasure runs one gw-smtpd with the state in bbolt (redis "") or in
// the server, and returns RCPTs a second and CPU µs per RCPT.
func fleetMeasure(work, name, redis string, redisProc *os.Process) (float64, float64) {
	dir := filepath.Join(work, "fleet-"+name)
	ctl := filepath.Join(dir, "control")
	check(os.MkdirAll(ctl, 0o755))
	files := map[string]string{"me": "gw.bench\n", "rcpthosts": "example.net\n", "greylistdelay": "300\n", "maxbadrcpt": "0\n", "maxjunk": "0\n"}
	if redis != "" {
		files["statebackend"] = "redis://" + redis + "/0\n"
		files["statebackendprefix"] = name + ":\n"
	}
	for f, v := range files {
		check(os.WriteFile(filepath.Join(ctl, f), []byte(v), 0o644))
	}
	db := filepath.Join(dir, "tcp.smtp.db")
	rules := exec.Command(filepath.Join(*binDir, "gw-tcprules"), db, db+".tmp")
	rules.Stdin = strings.NewReader(`:allow,RATE_MSG="100000000/1h",RATE_RCPT="1000000000/1h"` + "\n")
	out, err := rules.CombinedOutput()
	if err != nil {
		check(fmt.Errorf("gw-tcprules: %v: %s", err, out))
	}
	addr := freePort()
	smtpd := exec.Command(filepath.Join(*binDir, "gw-smtpd"), "--control-dir", ctl, "--listen", addr, "--acl", db,
		"--greylist", filepath.Join(dir, "greylist.db"), "-H")
	check(smtpd.Start())
	defer func() { smtpd.Process.Kill(); smtpd.Wait() }()
	check(waitListening(addr, 5*time.Second))

	cpu := func() time.Duration {
		d := processCPU(smtpd.Process.Pid)
		if redisProc != nil {
			d += processCPU(redisProc.Pid)
		}
		return d
	}
	var rcpts atomic.Int64
	var seq atomic.Int64
	var errOnce sync.Once
	var firstErr error
	stop := time.Now().Add(*duration)
	c0, t0 := cpu(), time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fleetSession(addr, stop, &seq, &rcpts); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	el, c := time.Since(t0), cpu()-c0
	check(firstErr)
	n := float64(rcpts.Load())
	return n / el.Seconds(), float64(c.Microseconds()) / max(n, 1)
}

// fleetSession runs transactions until stop, each RCPT to a new
// recipient, and counts the RCPTs answered 451 4.7.1 (a first try;
// control/maxbadrcpt and maxjunk 0 let a session go on).
func fleetSession(addr string, stop time.Time, seq, rcpts *atomic.Int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return l, nil
			}
		}
	}
	cmd := func(s, want string) error {
		if s != "" {
			if _, err := fmt.Fprintf(c, "%s\r\n", s); err != nil {
				return err
			}
		}
		r, err := reply()
		if err == nil && !strings.HasPrefix(r, want) {
			err = fmt.Errorf("%q: got %q, want %s", s, strings.TrimSpace(r), want)
		}
		return err
	}
	if err := cmd("", "220"); err != nil {
		return err
	}
	if err := cmd("EHLO bench.client", "250"); err != nil {
		return err
	}
	for time.Now().Before(stop) {
		if err := cmd("MAIL FROM:<s@bench.example>", "250"); err != nil {
			return err
		}
		for range 10 {
			if err := cmd(fmt.Sprintf("RCPT TO:<u%d@example.net>", seq.Add(1)), "451 4.7.1"); err != nil {
				return err
			}
			rcpts.Add(1)
		}
		if err := cmd("RSET", "250"); err != nil {
			return err
		}
	}
	return cmd("QUIT", "221")
}
