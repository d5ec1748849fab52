package main

// Relay end to end: Postfix's smtp-source → gw-smtpd → gw-queued →
// gw-send → Postfix's smtp-sink, all on loopback, beside a private
// Postfix doing the same relay in the same run. The two sides are set up
// by smtpd.go's startGW and startPostfix; here the figures run to the
// messages' arrival at the sink, which counts them (-c) as they come.

import (
	"bufio"
	"bytes"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// relayResult is one relay's figures.
type relayResult struct {
	rate      float64       // messages a second, from the first injection to the last arrival
	cpuPerMsg time.Duration // CPU of the relay's processes (not the load generator's or the sink's)
	perProg   []progCPU     // the same, program by program, where the side names them
	p50, p99  time.Duration // inject (250) → arrival at 100 messages/s offered
	err       error
}

const (
	relaySize     = 10 << 10
	bigRelaySize  = 100 << 10 // the second figure: what the bytes cost beyond the session
	relaySessions = 10
	latencyRate   = 100 // messages a second offered for the latency figure
)

// benchSend measures gw's relay and Postfix's and prints them side by
// side with their ratio, at relaySize and at bigRelaySize: the difference
// between the two is what gw spends on the bytes themselves. A side that
// fails is reported and skipped.
func benchSend(work string) {
	for _, p := range []string{"smtp-source", "smtp-sink"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  %s is not installed (make peers): skipped\n", p)
			return
		}
	}
	// Postfix's daemons run as postfix and must reach their queue under
	// work, which MkdirTemp made 0700.
	check(os.Chmod(work, 0o755))
	dir := filepath.Join(work, "relay")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)
	for _, size := range []int{relaySize, bigRelaySize} {
		fmt.Printf("\nrelay end to end: smtp-source → listener → queue → relay → smtp-sink, %dK, %d sessions\n",
			size>>10, relaySessions)
		gw := measureRelaySize(dir, "gw", size, func(sink string) (*side, error) {
			return startGW(filepath.Join(dir, fmt.Sprintf("gw-%d", size)), sink)
		})
		pf := measureRelaySize(dir, "postfix", size, func(sink string) (*side, error) {
			return startPostfix(filepath.Join(dir, fmt.Sprintf("postfix-%d", size)), sink)
		})
		fmt.Printf("%-24s %9s %12s %9s %9s\n", "relay", "msg/s", "CPU ms/msg", "p50 ms", "p99 ms")
		row := func(name string, r relayResult) {
			if r.err != nil {
				fmt.Printf("%-24s failed: %v\n", name, r.err)
				return
			}
			fmt.Printf("%-24s %9.0f %12.3f %9.2f %9.2f\n", name, r.rate, ms(r.cpuPerMsg), ms(r.p50), ms(r.p99))
			for _, p := range r.perProg {
				fmt.Printf("  %-22s %9s %12.3f\n", p.name, "", ms(p.cpu))
			}
		}
		row("gw (smtpd+queued+send)", gw)
		row("Postfix "+postfixVersion(), pf)
		if gw.err == nil && pf.err == nil {
			fmt.Printf("%-24s %8.2fx %11.2fx %8.2fx %8.2fx\n", "gw / Postfix", gw.rate/pf.rate,
				float64(gw.cpuPerMsg)/float64(pf.cpuPerMsg), float64(gw.p50)/float64(pf.p50), float64(gw.p99)/float64(pf.p99))
		}
		fmt.Printf("  (latency at %d msg/s offered, a connection a message, from the relay's 250 to the sink)\n", latencyRate)
	}
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// measureRelay is measureRelaySize at relaySize.
func measureRelay(dir, name string, start func(sink string) (*side, error)) relayResult {
	return measureRelaySize(dir, name, relaySize, start)
}

// measureRelaySize starts a side relaying into a fresh smtp-sink, warms it
// up, measures its throughput with smtp-source sending messages of size
// bytes to the last arrival, then its latency at latencyRate offered,
// into a fresh sink.
func measureRelaySize(dir, name string, size int, start func(sink string) (*side, error)) (res relayResult) {
	sinkAddr := freePort()
	sk, err := startCountingSink(sinkAddr)
	if err != nil {
		return relayResult{err: err}
	}
	defer func() { sk.stop() }()
	s, err := start(sinkAddr)
	if err != nil {
		return relayResult{err: err}
	}
	defer s.stop()
	n := int(1000 * duration.Seconds())
	// Warm up: processes started, connections made.
	if err := smtpSource(s.addr, size, 200); err != nil {
		return relayResult{err: err}
	}
	if !sk.waitFor(200, 30*time.Second) {
		return relayResult{err: fmt.Errorf("warm-up: %d of 200 messages arrived", sk.count())}
	}
	settle(s, 5*time.Second)
	base := sk.count()
	cpu0 := sideCPU(s)
	prog0 := progCPUs(s)
	t0 := time.Now()
	if err := smtpSource(s.addr, size, n); err != nil {
		return relayResult{err: err}
	}
	if !sk.waitFor(base+n, 120*time.Second) {
		return relayResult{err: fmt.Errorf("%d of %d messages arrived", sk.count()-base, n)}
	}
	took := time.Since(t0)
	settle(s, 10*time.Second) // removal after delivery is part of the cost
	res.rate = float64(n) / took.Seconds()
	res.cpuPerMsg = (sideCPU(s) - cpu0) / time.Duration(n)
	for i, p := range progCPUs(s) {
		res.perProg = append(res.perProg, progCPU{p.name, (p.cpu - prog0[i].cpu) / time.Duration(n), (p.switches - prog0[i].switches) / int64(n)})
	}

	sk.stop()
	sk, err = startCountingSink(sinkAddr)
	if err != nil {
		res.err = err
		return res
	}
	res.p50, res.p99, res.err = latency(s.addr, sk, size, int(latencyRate*duration.Seconds()))
	return res
}

// countingSink is a running smtp-sink with its message counter (-c).
type countingSink struct {
	cmd   *exec.Cmd
	mesgs atomic.Int64
	done  chan struct{}

	mu       sync.Mutex
	arrivals []time.Time // arrivals[k]: when the count reached k+1
}

var sinkCount = regexp.MustCompile(`mesg=(\d+)`)

// startCountingSink runs smtp-sink on addr and notes when its counter
// (-c: it prints one as each message's final dot arrives) goes up.
func startCountingSink(addr string) (*countingSink, error) {
	args := []string{"-c"}
	if os.Getuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, addr, "1000")
	s := &countingSink{cmd: exec.Command("smtp-sink", args...), done: make(chan struct{})}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(s.done)
		br := bufio.NewReader(out)
		for {
			chunk, err := br.ReadString('\r')
			if m := sinkCount.FindStringSubmatch(chunk); m != nil {
				t := time.Now()
				v, _ := strconv.ParseInt(m[1], 10, 64)
				s.mu.Lock()
				for int64(len(s.arrivals)) < v {
					s.arrivals = append(s.arrivals, t)
				}
				s.mu.Unlock()
				s.mesgs.Store(v)
			}
			if err != nil {
				return
			}
		}
	}()
	if err := waitListening(addr, 5*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("smtp-sink: %v: %s", err, stderr.String())
	}
	return s, nil
}

func (s *countingSink) count() int { return int(s.mesgs.Load()) }

func (s *countingSink) waitFor(n int, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for s.count() < n {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func (s *countingSink) stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd.Wait()
	}
}

func smtpSource(addr string, size, n int) error {
	out, err := exec.Command("smtp-source", "-s", strconv.Itoa(relaySessions), "-l", strconv.Itoa(size), "-m", strconv.Itoa(n),
		"-f", benchFrom, "-t", benchTo, addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("smtp-source: %v: %s", err, out)
	}
	return nil
}

// latency offers n messages at latencyRate a second, each on a
// connection of its own, and returns the median and 99th percentile of
// the time from the relay's 250 to the arrival at sk. smtp-sink names no
// message as it counts, so arrivals are matched to acceptances in order:
// exact as long as the relay keeps the order, which at this rate (10 ms
// between messages) it does but for the slowest few.
func latency(addr string, sk *countingSink, size, n int) (p50, p99 time.Duration, err error) {
	accepted := make([]time.Time, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	tick := time.NewTicker(time.Second / latencyRate)
	body := bytes.Repeat([]byte("0123456789abcde\n"), size/16)
	for i := 0; i < n; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t, err := sendOne(addr, i, body)
			if err != nil {
				failed.Store(err)
			}
			accepted[i] = t
		}(i)
	}
	tick.Stop()
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, err
	}
	if !sk.waitFor(n, 30*time.Second) {
		return 0, 0, fmt.Errorf("latency: %d of %d messages arrived", sk.count(), n)
	}
	lat := delays(sk, accepted)
	return lat[n/2], lat[n*99/100], nil
}

// delays matches the sink's first len(accepted) arrivals to the
// acceptances in order and returns the delays, shortest first.
func delays(sk *countingSink, accepted []time.Time) []time.Duration {
	n := len(accepted)
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].Before(accepted[j]) })
	sk.mu.Lock()
	arrived := append([]time.Time(nil), sk.arrivals[:n]...)
	sk.mu.Unlock()
	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = max(arrived[i].Sub(accepted[i]), 0)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

// sendOne sends message i on a connection of its own and returns when
// the relay said 250 to it.
func sendOne(addr string, i int, body []byte) (time.Time, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	if err := c.Hello("client.bench.example"); err != nil {
		return time.Time{}, err
	}
	t, err := sendOn(c, fmt.Sprintf("latency %d", i), body)
	if err == nil {
		c.Quit()
	}
	return t, err
}

// sendOn sends a message in session c and returns when the relay said
// 250 to it.
func sendOn(c *smtp.Client, subject string, body []byte) (time.Time, error) {
	if err := c.Mail(benchFrom); err != nil {
		return time.Time{}, err
	}
	if err := c.Rcpt(benchTo); err != nil {
		return time.Time{}, err
	}
	w, err := c.Data()
	if err != nil {
		return time.Time{}, err
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n", benchFrom, benchTo, subject)
	w.Write(body)
	if err := w.Close(); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
