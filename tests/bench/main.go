// Command bench measures gw's queue on this machine and prints each figure
// beside the rate the same disk sustains for the bare file-per-message
// protocol, measured in the same run: ratios taken in one run are what can
// be compared, absolute figures from different runs cannot.
//
// It runs the real programs from -bin: gw-queue (a process a message) and
// gw-queued (long-running, group commit, over its unix socket). While
// injectors run, a runner removes what they committed, as gw-send would, so
// the queue is measured in its steady state, deletes included.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/queue"
)

var (
	binDir   = flag.String("bin", "bin", "directory of the built programs")
	duration = flag.Duration("duration", 3*time.Second, "measuring time of each figure")
	qstatN   = flag.Int("qstat-messages", 100000, "queue size for the gw-qstat timing (0: skip)")
)

var env = envelope.Envelope{Sender: "bench@example.org", Recipients: []string{"sink@example.net"}}

var only = flag.String("only", "", "run only the sections named, comma-separated: "+sectionNames())

// sections are the parts of the bench in the order they run.
var sections = []struct {
	name string
	run  func(work string)
}{
	{"queue", queueBench},
	{"relay", benchSend},
	{"sendtls", benchSendTLS},
	{"backlog", backlogBench},
	{"qstat", func(work string) {
		if *qstatN > 0 {
			timeQstat(work, *qstatN, false)
			timeQstat(work, *qstatN, true)
		}
	}},
	{"tcprules", tcprulesBench},
	{"smtpd", smtpdBench},
	{"smtpdold", smtpdOldBench},
	{"scan", scanBench},
	{"scanpath", scanPathBench},
	{"qmtp", qmtpBench},
	{"qmq", qmqBench},
	{"fleet", fleetBench},
	{"auth", authBench},
	{"smtpd-auth", smtpdAuthBench},
}

func sectionNames() string {
	var names []string
	for _, s := range sections {
		names = append(names, s.name)
	}
	return strings.Join(names, ",")
}

func main() {
	flag.Parse()
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	for n := range want {
		if !strings.Contains(","+sectionNames()+",", ","+n+",") {
			check(fmt.Errorf("no section %q (sections: %s)", n, sectionNames()))
		}
	}
	work, err := os.MkdirTemp("", "gw-bench-")
	check(err)
	defer os.RemoveAll(work)
	fmt.Printf("gw bench: %s per figure, work dir %s\n", *duration, work)
	for _, s := range sections {
		if len(want) == 0 || want[s.name] {
			s.run(work)
		}
	}
}

// queueBench compares injection into the queue, through gw-queued's
// socket and through a gw-queue process a message, with the bare
// file-per-message protocol measured in the same run.
func queueBench(work string) {
	fmt.Printf("\nqueue injection\n")
	fmt.Printf("%-24s %5s %5s %9s %11s %7s %12s\n", "method", "size", "conc", "msg/s", "bare msg/s", "ratio", "CPU ms/msg")
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		for _, conc := range []int{1, 8, 32} {
			bare := measureBare(work, size, conc)
			row := func(name string, r result) {
				cpu := "-"
				if r.cpuPerMsg > 0 {
					cpu = fmt.Sprintf("%.3f", r.cpuPerMsg.Seconds()*1000)
				}
				fmt.Printf("%-24s %4dK %5d %9.0f %11.0f %6.2fx %12s\n", name, size>>10, conc, r.rate, bare, r.rate/bare, cpu)
			}
			row("bare file-per-message", result{rate: bare})
			row("gw-queued (socket)", measureQueued(work, size, conc))
			row("gw-queue (process)", measureProcess(work, size, conc))
		}
	}
	fmt.Printf("\ngw-queued's memory, 1 MB messages (peak RSS: VmHWM)\n")
	fmt.Printf("%5s %9s %12s %12s\n", "conc", "msg/s", "CPU ms/msg", "peak RSS")
	for _, conc := range []int{32, 200} {
		r := measureQueued(work, 1000000, conc)
		fmt.Printf("%5d %9.0f %12.3f %9.1f MiB\n", conc, r.rate, r.cpuPerMsg.Seconds()*1000, float64(r.peakRSS)/(1<<20))
	}
}

// measureBare runs the file-per-message commit protocol of qmail and
// Postfix with fsync: create a temporary file, write, fsync, rename into
// place, fsync the directory; a deleter removes files as a queue manager
// would, keeping about a thousand.
func measureBare(work string, size, conc int) float64 {
	dir := filepath.Join(work, fmt.Sprintf("bare-%d-%d", size, conc))
	check(os.MkdirAll(dir+"/tmp", 0o755))
	check(os.MkdirAll(dir+"/q", 0o755))
	defer os.RemoveAll(dir)
	body := bytes.Repeat([]byte("x"), size)
	var seq atomic.Int64
	stop := make(chan struct{})
	done := make(chan string, 1<<16)
	go func() { // the deleter
		var pending []string
		for name := range done {
			pending = append(pending, name)
			if len(pending) > 1000 {
				os.Remove(pending[0])
				pending = pending[1:]
			}
		}
	}()
	rate := run(conc, stop, func() error {
		n := seq.Add(1)
		tmp := fmt.Sprintf("%s/tmp/%d", dir, n)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(body); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		f.Close()
		final := fmt.Sprintf("%s/q/%d", dir, n)
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		d, err := os.Open(dir + "/q")
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		done <- final
		return err
	})
	close(done)
	return rate
}

// result is one figure: messages a second, and the injector's CPU time a
// message (user + system), which does not depend on how busy the machine is.
type result struct {
	rate      float64
	cpuPerMsg time.Duration
	peakRSS   int64 // the injector's VmHWM, bytes, when measured
}

// peakRSS returns a process's VmHWM (the most resident memory it has had)
// in bytes, 0 when it cannot be read.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	return 0
}

// processCPU returns the user + system time pid has used so far.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// withQueue makes a queue with a runner that removes what is committed and
// collects finished segments, as gw-send does after delivery.
func withQueue(work, name string, fn func(dir string) result) result {
	dir := filepath.Join(work, name)
	check(queue.Init(dir))
	defer os.RemoveAll(dir)
	q, err := queue.Open(dir)
	check(err)
	defer q.Close()
	r, err := q.OpenRunner()
	check(err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-r.Wake():
			case <-tick.C:
				r.Collect()
			}
			fresh, _ := r.Refresh()
			for _, m := range fresh {
				r.Remove(m.ID)
			}
		}
	}()
	rate := fn(dir)
	close(stop)
	wg.Wait()
	r.Close()
	return rate
}

func measureQueued(work string, size, conc int) result {
	return withQueue(work, fmt.Sprintf("queued-%d-%d", size, conc), func(dir string) result {
		sock := filepath.Join(dir, "lock", "inject.sock")
		cmd := exec.Command(filepath.Join(*binDir, "gw-queued"), "--queue", dir, "--socket", sock)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		check(cmd.Start())
		defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
		// The socket's file appears at bind, a moment before gw-queued
		// listens: wait for a connection, not for the file.
		for i := 0; i < 250; i++ {
			if c, err := inject.Dial(sock); err == nil {
				c.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		body := message(size)
		clients := make(chan *inject.Client, conc)
		for i := 0; i < conc; i++ {
			c, err := inject.Dial(sock)
			check(err)
			clients <- c
		}
		var n atomic.Int64
		cpu0 := processCPU(cmd.Process.Pid)
		rate := run(conc, make(chan struct{}), func() error {
			c := <-clients
			defer func() { clients <- c }()
			code, err := c.Inject(bytes.NewReader(body), env)
			if err == nil && code != 0 {
				err = fmt.Errorf("gw-queued exit code %d", code)
			}
			n.Add(1)
			return err
		})
		cpu := processCPU(cmd.Process.Pid) - cpu0
		return result{rate: rate, cpuPerMsg: cpu / time.Duration(max(n.Load(), 1)), peakRSS: peakRSS(cmd.Process.Pid)}
	})
}

func measureProcess(work string, size, conc int) result {
	return withQueue(work, fmt.Sprintf("process-%d-%d", size, conc), func(dir string) result {
		body := message(size)
		wire := env.Wire()
		var cpu, n atomic.Int64
		rate := run(conc, make(chan struct{}), func() error {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			w.Write(wire)
			w.Close()
			cmd := exec.Command(filepath.Join(*binDir, "gw-queue"))
			cmd.Env = append(os.Environ(), "GW_QUEUE="+dir)
			cmd.Stdin = bytes.NewReader(body)
			cmd.Stdout = r
			err = cmd.Run()
			r.Close()
			if err == nil {
				cpu.Add(int64(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()))
				n.Add(1)
			}
			return err
		})
		return result{rate: rate, cpuPerMsg: time.Duration(cpu.Load() / max(n.Load(), 1))}
	})
}

func message(size int) []byte {
	head := "From: bench@example.org\nTo: sink@example.net\nSubject: bench\n\n"
	return append([]byte(head), bytes.Repeat([]byte("0123456789abcdef\n")[:16], (size-len(head))/16)...)
}

// run calls op from conc goroutines for the measuring time and returns the
// completed operations a second.
func run(conc int, _ chan struct{}, op func() error) float64 {
	var n atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := op(); err != nil {
					failed.Store(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "bench: operation failed:", err)
		os.Exit(1)
	}
	return float64(n.Load()) / time.Since(start).Seconds()
}

// timeQstat fills a queue with n messages and times gw-qstat's summary,
// listing and JSON over it: in shared segments as gw-queued writes them, or
// with perMessage a segment a message as gw-queue writes them.
func timeQstat(work string, n int, perMessage bool) {
	qstat := filepath.Join(*binDir, "gw-qstat")
	if _, err := os.Stat(qstat); err != nil {
		fmt.Println("\ngw-qstat: not built, skipped")
		return
	}
	dir := filepath.Join(work, "qstat")
	check(queue.Init(dir))
	defer os.RemoveAll(dir)
	q, err := queue.Open(dir)
	check(err)
	c := q.NewCommitter()
	body := message(2 << 10)
	var wg sync.WaitGroup
	per := n / 32
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				e := envelope.Envelope{Sender: "bench@example.org", Recipients: []string{fmt.Sprintf("u%d@d%d.example.net", i, g)}}
				if perMessage {
					w, err := q.NewMessage(0, 0)
					check(err)
					w.Write(body)
					check(w.Commit(e))
					continue
				}
				in := c.NewIncoming(0, 0)
				in.Write(body)
				check(c.Commit(in, e))
			}
		}(g)
	}
	wg.Wait()
	c.Close()
	q.Close()
	layout := "shared segments (gw-queued)"
	if perMessage {
		layout = "a segment a message (gw-queue)"
	}
	fmt.Printf("\ngw-qstat over %d messages in %s, median of 3:\n", per*32, layout)
	for _, args := range [][]string{{}, {"list"}, {"--json"}} {
		var times []time.Duration
		for i := 0; i < 3; i++ {
			cmd := exec.Command(qstat, append([]string{"--queue", dir}, args...)...)
			start := time.Now()
			out, err := cmd.Output()
			times = append(times, time.Since(start))
			if err != nil {
				fmt.Printf("  gw-qstat %s: %v (%d bytes out)\n", strings.Join(args, " "), err, len(out))
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Printf("  gw-qstat %-8s %8.2f s\n", strings.Join(args, " "), times[1].Seconds())
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
