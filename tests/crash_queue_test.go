package tests

// Helpers of the crash suite (crash_test.go): messages with known bodies,
// injecting them through gw-queue and gw-queued, and checking a queue
// against what the injectors acknowledged.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/queue"
)

// Message sizes of the crash suite: a typical message, a large one that
// still fits gw-queued's group commit and crosses a body chunk (64 KiB),
// and one that crosses gw-queued's queue.MaxIncoming (1 MiB), so
// gw-queued streams it to a segment of its own.
const (
	sizeSmall = 1 << 10
	sizeLarge = 100 << 10
	sizeHuge  = 2 << 20
)

// sent is one injection and what came of it. Its recipient is unique in
// the ledger, so a listed message is found by its recipient.
type sent struct {
	rcpt  string
	body  []byte
	acked bool // the injector said 0: the message must be queued, whole
}

// ledger is every injection a test made into one queue.
type ledger struct {
	mu   sync.Mutex
	n    int
	msgs map[string]*sent
}

func newLedger() *ledger { return &ledger{msgs: make(map[string]*sent)} }

// add makes a message of size bytes with a fresh recipient and records it
// as not (yet) acknowledged.
func (l *ledger) add(tag string, size int, rng *rand.Rand) *sent {
	l.mu.Lock()
	l.n++
	rcpt := fmt.Sprintf("%s-%d@example.net", tag, l.n)
	l.mu.Unlock()
	m := &sent{rcpt: rcpt, body: messageBody(rcpt, size, rng)}
	l.mu.Lock()
	l.msgs[rcpt] = m
	l.mu.Unlock()
	return m
}

func (l *ledger) ack(m *sent) {
	l.mu.Lock()
	m.acked = true
	l.mu.Unlock()
}

// acked counts the acknowledged messages.
func (l *ledger) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m.acked {
			n++
		}
	}
	return n
}

// messageBody returns a message of exactly size bytes: headers naming the
// recipient, then lines of random letters, so a byte out of place or a
// chunk from another message shows.
func messageBody(rcpt string, size int, rng *rand.Rand) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: crash@example.org\nTo: %s\nSubject: crash test\n\n", rcpt)
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	for b.Len() < size {
		line := make([]byte, 72)
		for i := range line {
			line[i] = letters[rng.Intn(len(letters))]
		}
		line[71] = '\n'
		b.Write(line)
	}
	return b.Bytes()[:size]
}

func (m *sent) envelope() envelope.Envelope {
	return envelope.Envelope{Sender: "crash@example.org", Recipients: []string{m.rcpt}}
}

// runQueue runs gw-queue on queue dir for m, the message on fd 0 and the
// envelope on fd 1, optionally under wrap (strace and its options). It
// returns the exit code, -1 when the program was killed, and its stderr.
func runQueue(t *testing.T, dir string, m *sent, wrap ...string) (int, string) {
	t.Helper()
	args := append(append([]string{}, wrap...), bin("gw-queue"))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GW_QUEUE="+dir)
	cmd.Stdin = bytes.NewReader(m.body)
	envR, envW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The envelope is far smaller than a pipe's buffer: write it whole and
	// close, so gw-queue reads it to its final NUL after the message.
	if _, err := envW.Write(m.envelope().Wire()); err != nil {
		t.Fatal(err)
	}
	envW.Close()
	cmd.Stdout = envR
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	envR.Close()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1, stderr.String()
		}
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("running gw-queue: %v", err)
	return 0, ""
}

// injectQueue injects m with gw-queue and records an acknowledgement.
func injectQueue(t *testing.T, dir string, l *ledger, m *sent, wrap ...string) (int, string) {
	t.Helper()
	code, stderr := runQueue(t, dir, m, wrap...)
	if code == 0 {
		l.ack(m)
	}
	return code, stderr
}

// newCrashQueue returns a working directory and a queue made in it.
func newCrashQueue(t *testing.T) (dir, qdir string) {
	t.Helper()
	dir = workDir(t)
	qdir = filepath.Join(dir, "queue")
	initQueue(t, qdir)
	return dir, qdir
}

// openRunner opens the queue at dir and takes its runner, as gw-send
// does; done releases both.
func openRunner(t *testing.T, dir string) (r *queue.Runner, done func()) {
	t.Helper()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err = q.OpenRunner()
	if err != nil {
		q.Close()
		t.Fatalf("runner on %s: %v", dir, err)
	}
	return r, func() { r.Close(); q.Close() }
}

// initQueue makes a queue at dir with gw-queue --init.
func initQueue(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command(bin("gw-queue"), "--init", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("gw-queue --init %s: %v\n%s", dir, err, out)
	}
}

// queueState is what checkQueue found: the recipients of the listed
// messages, and the injections under way or dead.
type queueState struct {
	listed     map[string]bool
	inProgress int // segments ending inside a record, younger than Ossified
	// abandoned counts segments ending inside a record, older than
	// Ossified, that still hold live messages: the runner removes them
	// once those are finished.
	abandoned int
	// unacked counts listed messages whose injector died before it said
	// 0: whole, so the runner may deliver them (S2 of lib/queue/doc.go).
	unacked int
}

// checkQueue proves the crash invariants on the queue at dir, as a reader
// (Snapshot and OpenBody, gw-qstat's view) and as the runner that delivers
// (OpenRunner, Messages, Body):
//   - every message the ledger says was acknowledged is listed;
//   - every listed message is one the test sent, listed once, and its body
//     reads back to the end, checksum included, equal to what was sent
//     after the injector's trace line: nothing partial is listed or
//     delivered;
//   - no file of the queue is corrupt (a torn tail is only ever an
//     injection in progress, or one abandoned, which readers skip).
func checkQueue(t *testing.T, dir string, l *ledger) queueState {
	t.Helper()
	st := checkListing(t, dir, l)
	r, done := openRunner(t, dir)
	defer done()
	delivered := 0
	for _, m := range r.Messages() {
		id := m.ID
		rcpt := checkListed(t, l, "runner", &m, func() (io.ReadCloser, error) { return r.Body(id) })
		if !st.listed[rcpt] {
			t.Errorf("runner: %s is not in the snapshot", rcpt)
		}
		delivered++
	}
	if delivered != len(st.listed) {
		t.Errorf("runner sees %d messages, snapshot %d", delivered, len(st.listed))
	}
	return st
}

// checkListing is the reader's half of checkQueue: it takes no lock and
// writes nothing, so it also works on a full disk.
func checkListing(t *testing.T, dir string, l *ledger) queueState {
	t.Helper()
	q, err := queue.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	st := queueState{listed: make(map[string]bool), inProgress: snap.InProgress}
	for _, p := range snap.Problems {
		if p.Corrupt {
			t.Errorf("snapshot: corrupt %s at %d: %s", p.File, p.Offset, p.Reason)
		} else {
			st.abandoned++
		}
	}
	for _, m := range snap.Messages {
		rcpt := checkListed(t, l, "snapshot", m, func() (io.ReadCloser, error) { return q.OpenBody(m) })
		if st.listed[rcpt] {
			t.Errorf("snapshot: %s listed twice", rcpt)
		}
		st.listed[rcpt] = true
		l.mu.Lock()
		if m := l.msgs[rcpt]; m != nil && !m.acked {
			st.unacked++
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	for rcpt, m := range l.msgs {
		if m.acked && !st.listed[rcpt] {
			t.Errorf("acknowledged message %s is not listed", rcpt)
		}
	}
	l.mu.Unlock()
	return st
}

// checkListed reads the body of listed message m through open and compares
// it with what the ledger sent; it returns m's recipient.
func checkListed(t *testing.T, l *ledger, who string, m *queue.Message, open func() (io.ReadCloser, error)) string {
	t.Helper()
	if len(m.Recipients) != 1 {
		t.Errorf("%s: message %s has %d recipients, want 1", who, m.ID, len(m.Recipients))
		return ""
	}
	rcpt := m.Recipients[0].Address
	l.mu.Lock()
	want := l.msgs[rcpt]
	l.mu.Unlock()
	if want == nil {
		t.Errorf("%s: message %s for %q was never sent", who, m.ID, rcpt)
		return rcpt
	}
	rc, err := open()
	if err != nil {
		t.Errorf("%s: message %s (%s): open: %v", who, m.ID, rcpt, err)
		return rcpt
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Errorf("%s: message %s (%s): reading the body: %v after %d bytes", who, m.ID, rcpt, err, len(got))
		return rcpt
	}
	trace, rest, _ := bytes.Cut(got, []byte("\n"))
	if !bytes.HasPrefix(trace, []byte("Received: (gw-queue")) || !bytes.Equal(rest, want.body) {
		t.Errorf("%s: message %s (%s): stored %d bytes after trace %q, want %d bytes as sent",
			who, m.ID, rcpt, len(rest), trace, len(want.body))
	}
	return rcpt
}

// ossify sets the modification time of every segment of the queue at dir
// back past queue.Ossified, so that the runner treats what the dead
// injectors left as abandoned (as it would a day and a half later).
func ossify(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-queue.Ossified - time.Hour)
	for _, sub := range []string{"seg", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if err := os.Chtimes(filepath.Join(dir, sub, e.Name()), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// collect runs the runner's Collect on the queue at dir, after removing
// the messages whose recipients remove returns true.
func collect(t *testing.T, dir string, remove func(rcpt string) bool) queue.CollectStats {
	t.Helper()
	r, done := openRunner(t, dir)
	defer done()
	for _, m := range r.Messages() {
		if remove != nil && remove(m.Recipients[0].Address) {
			if err := r.Remove(m.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := r.Collect()
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	return st
}

// forget drops the ledger's messages for which gone returns true (removed
// through the runner), so later checks no longer expect them.
func (l *ledger) forget(gone func(rcpt string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for rcpt := range l.msgs {
		if gone(rcpt) {
			delete(l.msgs, rcpt)
		}
	}
}

// queued is a running gw-queued.
type queued struct {
	cmd    *exec.Cmd
	socket string
	done   chan struct{}
	err    error
	stderr *bytes.Buffer
}

// startQueued starts gw-queued on the queue at dir, optionally under wrap,
// and waits until its socket accepts connections.
func startQueued(t *testing.T, dir, socket string, wrap ...string) *queued {
	t.Helper()
	return startQueuedFlags(t, dir, socket, wrap)
}

// startQueuedFlags is startQueued with more of gw-queued's flags.
func startQueuedFlags(t *testing.T, dir, socket string, wrap []string, flags ...string) *queued {
	t.Helper()
	args := append(append([]string{}, wrap...), bin("gw-queued"), "--queue", dir, "--socket", socket)
	args = append(args, flags...)
	s := &queued{cmd: exec.Command(args[0], args[1:]...), socket: socket, done: make(chan struct{}), stderr: new(bytes.Buffer)}
	s.cmd.Stderr = &lockedWriter{w: s.stderr}
	// A group of its own, so that signals reach gw-queued under strace too
	// (a tracer that dies leaves its tracee running).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.kill() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := inject.Dial(socket); err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("gw-queued exited: %v\n%s", s.err, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw-queued did not listen on %s", socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends gw-queued with SIGKILL (or strace, which passes the signal on)
// and waits for it.
func (s *queued) kill() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// stop ends gw-queued the supervisor's way (SIGTERM) and waits for it.
func (s *queued) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("gw-queued did not stop on SIGTERM")
		s.kill()
	}
}

// killed reports whether gw-queued died of a signal.
func (s *queued) killed() bool {
	var ee *exec.ExitError
	if !errors.As(s.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// injectQueued sends m over client c, records an acknowledgement and
// returns the code (-1 when the outcome is unknown: the server is gone).
func injectQueued(c *inject.Client, l *ledger, m *sent) int {
	code, err := c.Inject(bytes.NewReader(m.body), m.envelope())
	if err != nil {
		return -1
	}
	if code == 0 {
		l.ack(m)
	}
	return code
}

// lockedWriter lets a program's stderr be read while it still runs.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// tail returns the last lines of a program's output, for a failure message.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
