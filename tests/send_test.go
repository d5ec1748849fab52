package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/dns/dnstest"
	"gw/lib/queue"
)

// sendReceiver is a go-smtp server on loopback that answers each RCPT by
// the recipient's local part (bad… 550, later… 451, hang… accepts and
// then stalls in DATA) and keeps every message it accepted.
type sendReceiver struct {
	addr string
	port int

	mu   sync.Mutex
	msgs []sendReceived
	hang chan struct{}
}

type sendReceived struct {
	from string
	to   []string
	data string
}

func startReceiver(t *testing.T) *sendReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rv := &sendReceiver{addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port, hang: make(chan struct{})}
	srv := smtp.NewServer(rv)
	srv.Domain = "receiver.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	go srv.Serve(l)
	t.Cleanup(func() { close(rv.hang); srv.Close() })
	return rv
}

func (rv *sendReceiver) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &sendSession{rv: rv}, nil
}

type sendSession struct {
	rv   *sendReceiver
	from string
	to   []string
}

func (s *sendSession) Reset()        { s.from, s.to = "", nil }
func (s *sendSession) Logout() error { return nil }
func (s *sendSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *sendSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "bad"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "later"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try again later"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *sendSession) Data(r io.Reader) error {
	for _, to := range s.to {
		if strings.HasPrefix(to, "hang") {
			<-s.rv.hang
			return &smtp.SMTPError{Code: 451, Message: "gave up"}
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.rv.mu.Lock()
	s.rv.msgs = append(s.rv.msgs, sendReceived{from: s.from, to: append([]string(nil), s.to...), data: string(b)})
	s.rv.mu.Unlock()
	return nil
}

func (rv *sendReceiver) received() []sendReceived {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]sendReceived(nil), rv.msgs...)
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendInstance is an instance directory with a queue and control files.
type sendInstance struct {
	dir, queue, control string
	cmd                 *exec.Cmd
	log                 *sendLog
}

type sendLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *sendLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *sendLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSendInstance(t *testing.T, control map[string]string) *sendInstance {
	t.Helper()
	dir := workDir(t)
	in := &sendInstance{dir: dir, queue: filepath.Join(dir, "queue"), control: filepath.Join(dir, "control"), log: &sendLog{}}
	if err := queue.Init(in.queue); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(in.control, 0o755)
	if _, ok := control["me"]; !ok {
		control["me"] = "gw.test"
	}
	for k, v := range control {
		if err := os.WriteFile(filepath.Join(in.control, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("gw-send log:\n%s", in.log.String())
		}
	})
	return in
}

func (in *sendInstance) start(t *testing.T) {
	t.Helper()
	in.cmd = exec.Command(bin("gw-send"), "--queue", in.queue, "--control-dir", in.control, "--stop-grace", "2s")
	in.cmd.Stderr = in.log
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gw-send to start", 5*time.Second, func() bool { return strings.Contains(in.log.String(), "info start ") })
}

func (in *sendInstance) signal(sig syscall.Signal) { in.cmd.Process.Signal(sig) }

func (in *sendInstance) stop() {
	if in.cmd == nil || in.cmd.ProcessState != nil {
		return
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-done
	}
}

var sendQid = regexp.MustCompile(`\bqid=([0-9a-f]{13})\b`)

// inject queues one message with the real gw-queue and returns its id.
func (in *sendInstance) inject(t *testing.T, sender string, rcpts []string, body string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var env bytes.Buffer
	fmt.Fprintf(&env, "F%s\x00", sender)
	for _, rc := range rcpts {
		fmt.Fprintf(&env, "T%s\x00", rc)
	}
	env.WriteByte(0)
	w.Write(env.Bytes())
	w.Close()
	cmd := exec.Command(bin("gw-queue"))
	cmd.Env = append(os.Environ(), "GW_QUEUE="+in.queue)
	cmd.Stdin = strings.NewReader(body)
	cmd.Stdout = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gw-queue: %v: %s", err, stderr.String())
	}
	m := sendQid.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("gw-queue logged no qid: %q", stderr.String())
	}
	return m[1]
}

// lines returns the log lines with the event and every one of the fields.
func (in *sendInstance) lines(event string, fields ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(in.log.String()))
	for sc.Scan() {
		l := sc.Text()
		f := strings.Fields(l)
		if len(f) < 2 || f[1] != event {
			continue
		}
		ok := true
		for _, want := range fields {
			if !strings.Contains(l, " "+want) {
				ok = false
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func (in *sendInstance) messages(t *testing.T) []*queue.Message {
	t.Helper()
	q, err := queue.OpenReadOnly(in.queue)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap.Messages
}

// dnsFor starts a loopback DNS server with records (dnstest.Start finds
// a port free for both UDP and TCP).
func dnsFor(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	srv := dnstest.Start(t)
	srv.Add(t, records...)
	return srv
}

// TestSendPerRecipientOutcomesAndBounce: one message, four recipients of
// one domain found by MX: one delivered, one refused (5xx), one deferred
// (4xx) until queuelifetime passes, one to a null-MX domain. Exactly one
// DSN comes back to the sender, listing the three failures.
func TestSendPerRecipientOutcomesAndBounce(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t,
		"good.test. MX 10 mx.good.test.",
		"mx.good.test. A 127.0.0.1",
		"sender.test. MX 10 mx.good.test.",
		"null.test. MX 0 .",
	)
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr, "queuelifetime": "2"})
	in.start(t)
	id := in.inject(t, "a@sender.test", []string{"ok@good.test", "bad@good.test", "later@good.test", "x@null.test"},
		"Subject: hello\nMessage-ID: <m1@sender.test>\n\nbody\n.leading dot\n")
	waitFor(t, "the delivery to ok@", 5*time.Second, func() bool { return len(rv.received()) >= 1 })
	got := rv.received()[0]
	if got.from != "a@sender.test" || len(got.to) != 1 || got.to[0] != "ok@good.test" {
		t.Fatalf("received %+v", got)
	}
	if !strings.Contains(got.data, "\r\n.leading dot\r\n") || !strings.Contains(got.data, "Received: (gw-queue") {
		t.Errorf("body on the wire: %q", got.data)
	}
	waitFor(t, "the deferral", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "rcpt=later@good.test", "result=deferred")) == 1
	})
	if len(in.lines("delivery", "rcpt=bad@good.test", "result=failed")) != 1 ||
		len(in.lines("delivery", "rcpt=x@null.test", "result=failed")) != 1 {
		t.Fatalf("no failure lines for bad@ and x@null.test")
	}
	// Past queuelifetime, the alarm makes gw-send try once more; the 4xx
	// is then final.
	time.Sleep(2100 * time.Millisecond)
	in.signal(syscall.SIGALRM)
	waitFor(t, "the bounce", 10*time.Second, func() bool { return len(rv.received()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	msgs := rv.received()
	if len(msgs) != 2 {
		t.Fatalf("%d messages received, want 2 (the message and one bounce)", len(msgs))
	}
	dsn := msgs[1]
	if dsn.from != "" || len(dsn.to) != 1 || dsn.to[0] != "a@sender.test" {
		t.Fatalf("bounce envelope %q -> %q", dsn.from, dsn.to)
	}
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Final-Recipient: rfc822; bad@good.test", "Status: 5.1.1",
		"Final-Recipient: rfc822; later@good.test", "Status: 5.4.7",
		"Final-Recipient: rfc822; x@null.test", "Status: 5.1.10",
		"Content-Type: text/rfc822-headers", "Message-ID: <m1@sender.test>",
	} {
		if !strings.Contains(dsn.data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.data)
		}
	}
	if strings.Contains(dsn.data, "ok@good.test") {
		t.Error("DSN names the delivered recipient")
	}
	waitFor(t, "the queue to empty", 5*time.Second, func() bool { return len(in.messages(t)) == 0 })
}

// TestSendDoubleBounce: a bounce that cannot be delivered goes to the
// postmaster once, from #@[]; when that fails too it is dropped.
func TestSendDoubleBounce(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr,
		"doublebounceto": "bad-postmaster", "doublebouncehost": "good.test"})
	in.start(t)
	in.inject(t, "", []string{"bad@good.test"}, "Subject: a bounce\n\nx\n")
	waitFor(t, "the dropped double bounce", 5*time.Second, func() bool { return len(in.lines("bounce_dropped")) == 1 })
	if n := len(in.lines("doublebounce", "to=bad-postmaster@good.test")); n != 1 {
		t.Fatalf("%d double bounces, want 1", n)
	}
	if len(rv.received()) != 0 {
		t.Fatalf("received %+v", rv.received())
	}
	waitFor(t, "the queue to empty", 5*time.Second, func() bool { return len(in.messages(t)) == 0 })
}

// TestSendDeadDestinationBackoff: a destination that refuses connections
// is backed off as a whole — one connection attempt for many messages —
// while mail for a live domain flows.
func TestSendDeadDestinationBackoff(t *testing.T) {
	rv := startReceiver(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close() // nothing listens there now: connection refused
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr,
		"smtproutes": fmt.Sprintf("dead.test:[127.0.0.1]:%d", deadPort)})
	for i := 0; i < 20; i++ {
		in.inject(t, "a@good.test", []string{fmt.Sprintf("u%d@dead.test", i)}, "Subject: dead\n\nx\n")
	}
	live := in.inject(t, "a@good.test", []string{"ok@good.test"}, "Subject: live\n\nx\n")
	in.start(t)
	waitFor(t, "the live delivery", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+live, "result=delivered")) == 1
	})
	time.Sleep(500 * time.Millisecond)
	if n := len(in.lines("backoff", "dest=smtp:127.0.0.1:")); n != 1 {
		t.Errorf("%d backoff lines, want 1", n)
	}
	if n := len(in.lines("connect")); n > 10 {
		t.Errorf("%d connection attempts to a dead destination for 20 messages", n)
	}
	// Every message is still queued: none bounced, none lost.
	if n := len(in.messages(t)); n != 20 {
		t.Errorf("%d messages queued, want 20", n)
	}
}
