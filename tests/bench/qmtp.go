package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/queue"
)

// qmtpBenchMessages is how many 1 KiB messages each transfer carries:
// a few seconds' worth on this machine.
const qmtpBenchMessages = 3000

// qmtpBench measures one queue instance handing messages to another, the
// QMQ design's link: gw-send delivering over QMTP to gw-qmtpd, beside the
// same transfer over SMTP to gw-smtpd, in the same run. Both receivers
// hand messages to a gw-queued of their own; the sending queue is filled
// before gw-send starts, and the clock runs from its start to its last
// delivery. concurrencydest is 20, gw-smtpd's --per-ip default, so that
// SMTP gets as many connections as it may; QMTP ignores it and keeps
// concurrencyqmtp's default, 64 messages in flight, one connection's
// pipeline.
func qmtpBench(work string) {
	fmt.Printf("\ninstance to instance, %d messages of 1K, gw-send to a gw-queued receiver\n", qmtpBenchMessages)
	fmt.Printf("%-24s %9s %9s\n", "transfer", "msg/s", "vs SMTP")
	smtp, err := qmtpTransfer(work, "smtp")
	if err != nil {
		fmt.Printf("%-24s failed: %v\n", "gw-send -> gw-smtpd", err)
		return
	}
	fmt.Printf("%-24s %9.0f %8.2fx\n", "gw-send -> gw-smtpd", smtp, 1.0)
	q, err := qmtpTransfer(work, "qmtp")
	if err != nil {
		fmt.Printf("%-24s failed: %v\n", "gw-send -> gw-qmtpd", err)
		return
	}
	fmt.Printf("%-24s %9.0f %8.2fx\n", "gw-send -> gw-qmtpd", q, q/smtp)
}

// qmtpProcs are the programs of one transfer, stopped together.
type qmtpProcs struct {
	cmds []*exec.Cmd
	logs []*bytes.Buffer
}

// fail returns err with the end of each program's log, for a figure
// that could not be measured.
func (p *qmtpProcs) fail(err error) (float64, error) {
	for i, l := range p.logs {
		err = fmt.Errorf("%v\n  %s: %s", err, p.cmds[i].Path, qmtpTail(l.String()))
	}
	return 0, err
}

func (p *qmtpProcs) start(env []string, stderr *bytes.Buffer, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(*binDir, name), args...)
	cmd.Env = append(os.Environ(), env...)
	if stderr == nil {
		stderr = &bytes.Buffer{}
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmds, p.logs = append(p.cmds, cmd), append(p.logs, stderr)
	return cmd, nil
}

func (p *qmtpProcs) stop() {
	for i := len(p.cmds) - 1; i >= 0; i-- {
		p.cmds[i].Process.Signal(os.Interrupt)
		p.cmds[i].Wait()
	}
}

// qmtpWait waits until path (a socket) or addr (TCP) answers.
func qmtpWait(network, addr string) error {
	for range 200 {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing answers on %s", addr)
}

// qmtpInstance creates a queue and a control directory with files.
func qmtpInstance(dir string, files map[string]string) (qdir, ctl string, err error) {
	qdir, ctl = filepath.Join(dir, "queue"), filepath.Join(dir, "control")
	if err := queue.Init(qdir); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(ctl, 0o755); err != nil {
		return "", "", err
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(ctl, name), []byte(v+"\n"), 0o644); err != nil {
			return "", "", err
		}
	}
	return qdir, ctl, nil
}

// qmtpTransfer returns the messages a second from a filled queue to a
// receiver over proto.
func qmtpTransfer(work, proto string) (float64, error) {
	dir := filepath.Join(work, "transfer-"+proto)
	defer os.RemoveAll(dir)
	var procs qmtpProcs
	defer procs.stop()
	addr, err := qmtpFreeAddr()
	if err != nil {
		return 0, err
	}
	rq, rctl, err := qmtpInstance(filepath.Join(dir, "receiver"), map[string]string{"me": "rcv.bench.example", "rcpthosts": "example.net"})
	if err != nil {
		return 0, err
	}
	rsock := filepath.Join(rq, "lock", "inject.sock")
	if _, err := procs.start(nil, nil, "gw-queued", "--queue", rq, "--socket", rsock); err != nil {
		return procs.fail(err)
	}
	if err := qmtpWait("unix", rsock); err != nil {
		return procs.fail(err)
	}
	// -H: no client names to look up (see the SMTP bench)
	if _, err := procs.start([]string{"GW_QUEUED=" + rsock}, nil, "gw-"+proto+"d", "--control-dir", rctl, "--listen", addr, "-H"); err != nil {
		return procs.fail(err)
	}
	if err := qmtpWait("tcp", addr); err != nil {
		return procs.fail(err)
	}
	sq, sctl, err := qmtpInstance(filepath.Join(dir, "sender"), map[string]string{"me": "snd.bench.example", proto + "routes": "example.net:" + addr, "concurrencydest": "20"})
	if err != nil {
		return procs.fail(err)
	}
	if err := qmtpFill(sq, qmtpBenchMessages); err != nil {
		return procs.fail(err)
	}
	// gw-send's log comes through a pipe, to count deliveries as they
	// are logged.
	pr, pw, err := os.Pipe()
	if err != nil {
		return procs.fail(err)
	}
	defer pr.Close()
	cmd := exec.Command(filepath.Join(*binDir, "gw-send"), "--queue", sq, "--control-dir", sctl)
	cmd.Stderr = pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return procs.fail(err)
	}
	pw.Close()
	procs.cmds, procs.logs = append(procs.cmds, cmd), append(procs.logs, &bytes.Buffer{})
	var delivered, other atomic.Int64
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "info delivery ") {
				continue
			}
			if strings.Contains(l, " result=delivered ") {
				if delivered.Add(1) == qmtpBenchMessages {
					close(done)
				}
			} else if other.Add(1) == 1 {
				fmt.Fprintf(os.Stderr, "bench: %s\n", l)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return procs.fail(fmt.Errorf("%d of %d delivered (%d not) after 2 minutes", delivered.Load(), qmtpBenchMessages, other.Load()))
	}
	return qmtpBenchMessages / time.Since(start).Seconds(), nil
}

// qmtpFill queues n 1 KiB messages for example.net through a gw-queued of
// the queue's own, stopped afterwards.
func qmtpFill(qdir string, n int) error {
	var procs qmtpProcs
	defer procs.stop()
	sock := filepath.Join(qdir, "lock", "fill.sock")
	if _, err := procs.start(nil, nil, "gw-queued", "--queue", qdir, "--socket", sock); err != nil {
		return err
	}
	if err := qmtpWait("unix", sock); err != nil {
		return err
	}
	body := message(1 << 10)
	env := envelope.Envelope{Sender: "bench@example.org", Recipients: []string{"sink@example.net"}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := inject.Dial(sock)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for next.Add(1) <= int64(n) {
				if code, err := c.Inject(bytes.NewReader(body), env); err != nil || code != 0 {
					errs <- fmt.Errorf("filling the queue: code %d, %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// qmtpFreeAddr returns a loopback address free a moment ago.
func qmtpFreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// qmtpTail returns the last lines of a log, for an error.
func qmtpTail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n    ")
}
