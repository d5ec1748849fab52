package tests

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/queue"
)

// gateReceiver is a go-smtp server that stops the first message it gets
// at a gate until the test opens it: "mid" after reading the first 64 KiB
// of the body (the sender is then blocked writing the rest), "end" after
// reading the whole body and counting the message as taken, just before
// its 250 goes out. Later messages pass. It counts each subject it took.
type gateReceiver struct {
	port    int
	mode    string
	reached chan struct{}
	open    chan struct{}

	mu    sync.Mutex
	gated bool
	taken map[string]int
}

func startGateReceiver(t *testing.T, mode string) *gateReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rv := &gateReceiver{port: l.Addr().(*net.TCPAddr).Port, mode: mode, reached: make(chan struct{}),
		open: make(chan struct{}), taken: map[string]int{}}
	srv := smtp.NewServer(rv)
	srv.Domain = "gate.test"
	srv.ReadTimeout = 30 * time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return rv
}

func (rv *gateReceiver) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &gateSession{rv: rv}, nil
}

func (rv *gateReceiver) count(subject string) int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.taken[subject]
}

type gateSession struct{ rv *gateReceiver }

func (s *gateSession) Reset()                               {}
func (s *gateSession) Logout() error                        { return nil }
func (s *gateSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *gateSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *gateSession) take(subject string) {
	s.rv.mu.Lock()
	s.rv.taken[subject]++
	s.rv.mu.Unlock()
}

// first reports whether this is the first message, the one gated.
func (s *gateSession) first() bool {
	s.rv.mu.Lock()
	defer s.rv.mu.Unlock()
	g := !s.rv.gated
	s.rv.gated = true
	return g
}

func (s *gateSession) gate() {
	close(s.rv.reached)
	<-s.rv.open
}

func subjectOf(b []byte) string {
	_, rest, _ := strings.Cut(string(b), "Subject: ")
	subject, _, _ := strings.Cut(rest, "\r\n")
	return subject
}

func (s *gateSession) Data(r io.Reader) error {
	gated := s.first()
	if gated && s.rv.mode == "mid" {
		head := make([]byte, 64<<10)
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		s.gate()
		rest, err := io.ReadAll(r)
		if err != nil {
			return err // the sender died: no end of data, nothing taken
		}
		s.take(subjectOf(append(head, rest...)))
		return nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.take(subjectOf(b))
	if gated {
		s.gate() // taken: the 250 goes out when the gate opens
	}
	return nil
}

// straceAttach traces the running gw-send's calls on path (its journal)
// with strace's injection opts, and returns strace's log once every
// thread of gw-send is traced.
func straceAttach(t *testing.T, pid int, path, log string, opts ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"-qq", "-f", "-p", fmt.Sprint(pid), "-o", log, "-P", path, "-e", "trace=write,fdatasync,fsync"}, opts...)
	cmd := exec.Command(need(t, "strace"), args...)
	var stderr bytes.Buffer // strace 6.1 complains of the thread killed in a hold
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("strace: %s", stderr.String())
		}
	})
	waitFor(t, "strace to attach every thread", 5*time.Second, func() bool {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
			if err != nil || strings.Contains(string(b), "TracerPid:\t0\n") {
				return false
			}
		}
		return len(tasks) > 0
	})
	return cmd
}

// journalFile returns the newest journal file of a queue: after start
// gw-send writes only to it.
func journalFile(t *testing.T, qdir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(qdir, "journal"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no journal in %s: %v", qdir, err)
	}
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return filepath.Join(qdir, "journal", names[len(names)-1])
}

// TestSendCrash kills gw-send with SIGKILL at four points of one
// delivery and restarts it: nothing is lost, and the message arrives
// twice only when the kill fell between the receiver's 250 and the
// journal write that records the delivery (qmail's window: for a killed
// process the journal's write(2) is the point of no return, as the page
// cache survives it; fdatasync matters only for a power loss). The
// message's removal goes in that same write, with the outcome: killed
// after it, the message is gone, delivered once, with no second flush
// for the restart to make up.
func TestSendCrash(t *testing.T) {
	cases := []struct {
		name   string
		mode   string   // gate of the receiver
		inject []string // strace injection on the journal; nil: the test kills
		copies int      // arrivals of the message in the end
		state  queue.State
		gone   bool // removed by the time of the kill
	}{
		{"during DATA", "mid", nil, 1, queue.Pending, false},
		{"after the 250, before the journal write", "end", []string{"-e", "inject=write:signal=KILL"}, 2, queue.Pending, false},
		{"after the journal write, before its flush", "end", []string{"-e", "inject=fdatasync:signal=KILL"}, 1, queue.Delivered, true},
		{"after the journal flush", "end", []string{"-e", "inject=fdatasync:delay_exit=20000000"}, 1, queue.Delivered, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rv := startGateReceiver(t, c.mode)
			in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d", rv.port)})
			size := 1 << 10
			if c.mode == "mid" {
				size = 16 << 20 // beyond what loopback's socket buffers hold
			}
			body := "Subject: crash\n\n" + strings.Repeat(strings.Repeat("x", 63)+"\n", size/64)
			id := in.inject(t, "a@src.test", []string{"r@dst.test"}, body)
			in.start(t)
			first := in.cmd
			exited := make(chan struct{})
			go func() { first.Wait(); close(exited) }()
			select {
			case <-rv.reached:
			case <-time.After(10 * time.Second):
				t.Fatal("the message never reached the receiver's gate")
			}
			pid := first.Process.Pid
			var slog string
			var tracer *exec.Cmd
			if c.inject != nil {
				slog = filepath.Join(in.dir, "strace.log")
				tracer = straceAttach(t, pid, journalFile(t, in.queue), slog, c.inject...)
			}
			opened := time.Now()
			close(rv.open)
			switch {
			case c.inject == nil:
				first.Process.Signal(syscall.SIGKILL)
			case strings.Contains(c.inject[1], "delay_exit"):
				// strace logs the flush on its return, then holds gw-send
				// there: kill it in the hold.
				waitFor(t, "the journal flush", 10*time.Second, func() bool {
					b, _ := os.ReadFile(slog)
					return strings.Contains(string(b), "fdatasync(") && strings.Contains(string(b), "DELAYED")
				})
				if time.Since(opened) > 15*time.Second {
					t.Fatal("the kill would come after the hold")
				}
				first.Process.Signal(syscall.SIGKILL)
				// strace 6.1 loses track of a thread killed while held
				// ("has delayed wait data set already") and would keep
				// the dead process from being reaped: end the trace.
				time.Sleep(100 * time.Millisecond)
				tracer.Process.Kill()
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Fatal("gw-send was not killed")
			}
			if ws := first.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("gw-send ended with %v, want SIGKILL", first.ProcessState)
			}
			msgs := in.messages(t)
			switch {
			case c.gone && len(msgs) != 0:
				t.Fatalf("after the kill the queue holds %d messages (%s's recipient %s), want none: the removal went with the outcome",
					len(msgs), msgs[0].ID, msgs[0].Recipients[0].State)
			case !c.gone && (len(msgs) != 1 || msgs[0].ID.String() != id):
				t.Fatalf("after the kill the queue holds %d messages, want %s", len(msgs), id)
			case !c.gone && msgs[0].Recipients[0].State != c.state:
				t.Errorf("after the kill the journal says %s, want %s", msgs[0].Recipients[0].State, c.state)
			}
			if strings.Contains(in.log.String(), "result=delivered") != (c.mode == "end") {
				t.Errorf("delivery line before the kill: %v, want %v", !(c.mode == "end"), c.mode == "end")
			}
			// Restart: what was not recorded is delivered again; a fresh
			// message flows too.
			in.start(t)
			waitFor(t, "gw-send to start again", 5*time.Second, func() bool { return len(in.lines("start")) == 2 })
			later := in.inject(t, "a@src.test", []string{"r@dst.test"}, "Subject: after\n\nx\n")
			waitFor(t, "the queue to empty", 20*time.Second, func() bool { return len(in.messages(t)) == 0 })
			if got := rv.count("crash"); got != c.copies {
				t.Errorf("the message arrived %d times, want %d", got, c.copies)
			}
			if got := rv.count("after"); got != 1 {
				t.Errorf("the message queued after the restart (%s) arrived %d times", later, got)
			}
			// The second arrival is announced: the restarted gw-send finds
			// the dot record with no outcome after it. A kill before the
			// dot or after the outcome's flush announces nothing.
			if got, want := len(in.lines("possible_duplicate", "qid="+id)), c.copies-1; got != want {
				t.Errorf("%d possible_duplicate lines, want %d", got, want)
			}
		})
	}
}
