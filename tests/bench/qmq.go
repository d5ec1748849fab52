package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
)

// The QMQ figure: one destination is slow (slow.test's receiver accepts
// connections and answers every command after qmqSlowReply), the others
// are not (fast.test, smtp-sink). The same mail — qmqSlow messages for
// slow.test, qmqFast for fast.test — leaves one instance whose gw-send
// delivers to both, then a primary instance that hands each domain over
// QMTP to a secondary of its own (the layout of gw-instance route), each
// secondary's gw-send delivering to its receiver. The figure is fast.test's
// throughput in both layouts and their ratio, from the same run.
const (
	qmqSlow      = 300
	qmqFast      = 1000
	qmqSlowReply = 500 * time.Millisecond
	qmqLimit     = 40 * time.Second
)

func qmqBench(work string) {
	fmt.Printf("\nQMQ: %d messages to a slow destination (%v a reply), %d to a fast one, concurrencyremote 20, concurrencydest 20\n",
		qmqSlow, qmqSlowReply, qmqFast)
	fmt.Printf("%-34s %9s %9s\n", "layout", "fast msg/s", "ratio")
	one, err := qmqRun(work, false)
	if err != nil {
		fmt.Printf("%-34s failed: %v\n", "one instance", err)
		return
	}
	fmt.Printf("%-34s %9.0f %8.2fx\n", "one instance", one, 1.0)
	per, err := qmqRun(work, true)
	if err != nil {
		fmt.Printf("%-34s failed: %v\n", "per-domain instances (QMTP)", err)
		return
	}
	fmt.Printf("%-34s %9.0f %8.2fx\n", "per-domain instances (QMTP)", per, per/one)
}

// qmqRun fills a queue with both domains' mail, starts the delivery and
// returns fast.test's messages a second, counted until they all arrived
// or qmqLimit passed.
func qmqRun(work string, perDomain bool) (float64, error) {
	dir := filepath.Join(work, fmt.Sprintf("qmq-%v", perDomain))
	defer os.RemoveAll(dir)
	var procs qmtpProcs
	defer procs.stop()
	slowAddr, err := qmtpFreeAddr()
	if err != nil {
		return 0, err
	}
	slow, err := startSlowReceiver(slowAddr, qmqSlowReply)
	if err != nil {
		return 0, err
	}
	defer slow.Close()
	fastAddr, err := qmtpFreeAddr()
	if err != nil {
		return 0, err
	}
	sink, err := startCountingSink(fastAddr)
	if err != nil {
		return 0, err
	}
	defer sink.stop()

	limits := map[string]string{"concurrencyremote": "20", "concurrencydest": "20"}
	with := func(m map[string]string) map[string]string {
		for k, v := range limits {
			m[k] = v
		}
		return m
	}
	// secondary starts an instance: gw-queued, gw-qmtpd for domain on a
	// fresh address, gw-send to receiver; it returns the QMTP address.
	secondary := func(domain, receiver string) (string, error) {
		q, ctl, err := qmtpInstance(filepath.Join(dir, domain), with(map[string]string{"me": domain + ".bench.example",
			"rcpthosts": domain, "smtproutes": domain + ":" + receiver}))
		if err != nil {
			return "", err
		}
		sock := filepath.Join(q, "lock", "inject.sock")
		if _, err := procs.start(nil, nil, "gw-queued", "--queue", q, "--socket", sock); err != nil {
			return "", err
		}
		if err := qmtpWait("unix", sock); err != nil {
			return "", err
		}
		addr, err := qmtpFreeAddr()
		if err != nil {
			return "", err
		}
		if _, err := procs.start([]string{"GW_QUEUED=" + sock}, nil, "gw-qmtpd", "--control-dir", ctl, "--listen", addr); err != nil {
			return "", err
		}
		if err := qmtpWait("tcp", addr); err != nil {
			return "", err
		}
		if _, err := procs.start(nil, nil, "gw-send", "--queue", q, "--control-dir", ctl); err != nil {
			return "", err
		}
		return addr, nil
	}
	files := with(map[string]string{"me": "primary.bench.example"})
	if perDomain {
		sq, err := secondary("slow.test", slowAddr)
		if err != nil {
			return procs.fail(err)
		}
		fq, err := secondary("fast.test", fastAddr)
		if err != nil {
			return procs.fail(err)
		}
		files["qmtproutes"] = "slow.test:" + sq + "\nfast.test:" + fq
	} else {
		files["smtproutes"] = "slow.test:" + slowAddr + "\nfast.test:" + fastAddr
	}
	pq, pctl, err := qmtpInstance(filepath.Join(dir, "primary"), files)
	if err != nil {
		return procs.fail(err)
	}
	if err := qmqFill(pq); err != nil {
		return procs.fail(err)
	}
	start := time.Now()
	if _, err := procs.start(nil, nil, "gw-send", "--queue", pq, "--control-dir", pctl); err != nil {
		return procs.fail(err)
	}
	sink.waitFor(qmqFast, qmqLimit)
	n := sink.count()
	if n == 0 {
		return procs.fail(fmt.Errorf("no message reached fast.test in %v", qmqLimit))
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// qmqFill queues the slow and the fast messages, interleaved, through a
// gw-queued of the queue's own, stopped afterwards.
func qmqFill(qdir string) error {
	var procs qmtpProcs
	defer procs.stop()
	sock := filepath.Join(qdir, "lock", "fill.sock")
	if _, err := procs.start(nil, nil, "gw-queued", "--queue", qdir, "--socket", sock); err != nil {
		return err
	}
	if err := qmtpWait("unix", sock); err != nil {
		return err
	}
	c, err := inject.Dial(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	body := message(1 << 10)
	slow, fast := 0, 0
	for slow < qmqSlow || fast < qmqFast {
		rcpt := "u@fast.test"
		if slow < qmqSlow && (fast >= qmqFast || slow*qmqFast <= fast*qmqSlow) {
			rcpt, slow = "u@slow.test", slow+1
		} else {
			fast++
		}
		env := envelope.Envelope{Sender: "bench@example.org", Recipients: []string{rcpt}}
		if code, err := c.Inject(bytes.NewReader(body), env); err != nil || code != 0 {
			return fmt.Errorf("filling the queue: code %d, %v", code, err)
		}
	}
	return nil
}

// slowReceiver is an SMTP receiver that accepts every connection at once
// and answers each command, the greeting and the final dot after delay.
type slowReceiver struct {
	l     net.Listener
	wg    sync.WaitGroup
	conns sync.Map
	n     atomic.Int64
}

func startSlowReceiver(addr string, delay time.Duration) (*slowReceiver, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &slowReceiver{l: l}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.conns.Store(c, true)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer r.conns.Delete(c)
				defer c.Close()
				r.serve(c, delay)
			}()
		}
	}()
	return r, nil
}

func (r *slowReceiver) serve(c net.Conn, delay time.Duration) {
	br := bufio.NewReader(c)
	say := func(s string) bool {
		time.Sleep(delay)
		_, err := c.Write([]byte(s + "\r\n"))
		return err == nil
	}
	if !say("220 slow.test ESMTP") {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 slow.test")
		case cmd == "DATA":
			if !say("354 go on") {
				return
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
			}
			r.n.Add(1)
			say("250 2.0.0 ok")
		case cmd == "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			say("250 2.0.0 ok")
		}
	}
}

func (r *slowReceiver) Close() {
	r.l.Close()
	r.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	r.wg.Wait()
}
