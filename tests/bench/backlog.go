package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
)

var backlogN = flag.Int("backlog-messages", 100000, "messages deferred to a dead destination in the backlog figure")

// backlogBench measures the two delays gw-send must not have: fresh mail
// to a live destination slowed by a large backlog deferred to a dead one
// (the same relay figures with the queue empty and with the backlog), and
// a queue delay of seconds when mail is offered steadily at 80 % of gw's
// own maximum rate.
func backlogBench(work string) {
	fmt.Printf("\nfresh mail beside a backlog (%d messages deferred to a dead destination), %dK, %d sessions\n",
		*backlogN, relaySize>>10, relaySessions)
	for _, p := range []string{"smtp-source", "smtp-sink"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  %s is not installed (make peers): skipped\n", p)
			return
		}
	}
	dir := filepath.Join(work, "backlog")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)
	dead := freePort() // nothing listens there: every attempt is refused
	route := "dead.example:" + dead
	plain := measureRelay(dir, "empty", func(sink string) (*side, error) {
		return startGW(filepath.Join(dir, "empty"), sink, route)
	})
	var filled time.Duration
	backlog := measureRelay(dir, "backlog", func(sink string) (*side, error) {
		gdir := filepath.Join(dir, "backlog")
		s, err := startGW(gdir, sink, route)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := fillDead(filepath.Join(gdir, "inject.sock"), *backlogN); err != nil {
			s.stop()
			return nil, err
		}
		settle(s, 120*time.Second) // gw-send has tried and deferred them
		filled = time.Since(t0)
		return s, nil
	})
	fmt.Printf("%-34s %9s %9s %9s\n", "queue", "msg/s", "p50 ms", "p99 ms")
	row := func(name string, r relayResult) {
		if r.err != nil {
			fmt.Printf("%-34s failed: %v\n", name, r.err)
			return
		}
		fmt.Printf("%-34s %9.0f %9.2f %9.2f\n", name, r.rate, ms(r.p50), ms(r.p99))
	}
	row("empty", plain)
	row(fmt.Sprintf("%d deferred to a dead host", *backlogN), backlog)
	if plain.err == nil && backlog.err == nil {
		fmt.Printf("%-34s %8.2fx %8.2fx %8.2fx\n", "with backlog / empty", backlog.rate/plain.rate,
			float64(backlog.p50)/float64(plain.p50), float64(backlog.p99)/float64(plain.p99))
		fmt.Printf("  (the backlog was injected and deferred in %.1f s before the figures)\n", filled.Seconds())
	}
	if plain.err != nil {
		return
	}

	rate := 0.8 * plain.rate
	fmt.Printf("\nqueue delay at 80%% of gw's maximum relay rate: %.0f msg/s offered for %s, %d sessions\n",
		rate, *duration, relaySessions)
	sinkAddr := freePort()
	sk, err := startCountingSink(sinkAddr)
	check(err)
	defer sk.stop()
	s, err := startGW(filepath.Join(dir, "steady"), sinkAddr)
	check(err)
	defer s.stop()
	p50, p99, worst, err := steadyLatency(s.addr, sk, rate, int(rate*duration.Seconds()))
	if err != nil {
		fmt.Printf("  failed: %v\n", err)
		return
	}
	fmt.Printf("  acceptance (250) to arrival: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", ms(p50), ms(p99), ms(worst))
}

// fillDead injects n 1 KiB messages for a recipient at the dead
// destination through gw-queued's socket, 32 at a time.
func fillDead(sock string, n int) error {
	env := envelope.Envelope{Sender: benchFrom, Recipients: []string{"nobody@dead.example"}}
	body := message(1 << 10)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := inject.Dial(sock)
			if err != nil {
				failed.Store(err)
				return
			}
			defer c.Close()
			for next.Add(1) <= int64(n) {
				code, err := c.Inject(bytes.NewReader(body), env)
				if err == nil && code != 0 {
					err = fmt.Errorf("gw-queued exit code %d", code)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	return nil
}

// steadyLatency offers n messages at rate a second over relaySessions
// SMTP sessions kept open (as smtp-source does) and returns the median,
// 99th percentile and largest time from the relay's 250 to the arrival at
// sk, arrivals matched to acceptances in order.
func steadyLatency(addr string, sk *countingSink, rate float64, n int) (p50, p99, worst time.Duration, err error) {
	jobs := make(chan int, n)
	accepted := make([]time.Time, n)
	var failed atomic.Value
	var wg sync.WaitGroup
	body := bytes.Repeat([]byte("0123456789abcde\n"), relaySize/16)
	for range relaySessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(addr)
			if err == nil {
				err = c.Hello("client.bench.example")
			}
			if err != nil {
				failed.Store(err)
				for range jobs {
				}
				return
			}
			defer c.Quit()
			for i := range jobs {
				t, err := sendOn(c, fmt.Sprintf("steady %d", i), body)
				if err != nil {
					failed.Store(err)
					continue
				}
				accepted[i] = t
			}
		}()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	for i := range n {
		<-tick.C
		jobs <- i
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, 0, err
	}
	if !sk.waitFor(n, 60*time.Second) {
		return 0, 0, 0, fmt.Errorf("%d of %d messages arrived", sk.count(), n)
	}
	lat := delays(sk, accepted)
	return lat[n/2], lat[n*99/100], lat[n-1], nil
}
