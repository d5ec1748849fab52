package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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

	"gw/lib/dns/dnstest"
	"gw/lib/queue"
)

// sendReceiver is tests/peers/smtp-receiver.py, an aiosmtpd server on
// loopback that answers by rules in the addresses (see the script's
// header): RCPT to bad… 550 and later… 451; after DATA hang… never
// answers, data5… 554 and data4… 451; MAIL from mail5… 553 and mail4…
// 451. It keeps every message it accepted as a file in dir.
type sendReceiver struct {
	addr string
	port int

	t   *testing.T
	dir string // one NNNNNN.json a message, in the order accepted
	log *sendLog
}

type sendReceived struct {
	from string
	to   []string
	data string
}

// receiverScript is the receiver, relative to this package's directory
// (go test's working directory).
const receiverScript = "peers/smtp-receiver.py"

// receiverPython finds a python3 that has aiosmtpd: Debian's, where
// python3-aiosmtpd installs it, before the first python3 on PATH (which
// may be another installation without it).
var receiverPython = sync.OnceValues(func() (string, error) {
	var tried []string
	for _, c := range []string{"/usr/bin/python3", "python3"} {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(p, "-c", "import aiosmtpd").CombinedOutput()
		if err == nil {
			return p, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, bytes.TrimSpace(out)))
	}
	if len(tried) == 0 {
		return "", fmt.Errorf("no python3 found")
	}
	return "", fmt.Errorf("no python3 with aiosmtpd (%s)", strings.Join(tried, "; "))
})

// startReceiver starts the receiver on a port of its choosing and returns
// once it accepts connections; it is killed when the test ends.
func startReceiver(t *testing.T) *sendReceiver {
	t.Helper()
	py, err := receiverPython()
	if err != nil {
		t.Fatalf("the SMTP receiver needs python3 and aiosmtpd: run scripts/test-peers.sh (python3-aiosmtpd): %v", err)
	}
	rv := &sendReceiver{t: t, dir: filepath.Join(workDir(t), "received")}
	if err := os.Mkdir(rv.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, receiverScript, rv.dir)
	// A group of its own, killed whole at the end; and a pipe on stdin
	// that the script watches, so that it also goes when the test binary
	// dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &sendLog{}
	cmd.Stderr = stderr
	rv.log = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the SMTP receiver: %v (run scripts/test-peers.sh)", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		stdin.Close()
		if t.Failed() {
			t.Logf("SMTP receiver's log:\n%s", stderr.String())
		}
	})
	// The script prints its port once it listens.
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		if _, err := fmt.Sscan(l, &rv.port); err != nil || rv.port <= 0 {
			t.Fatalf("the SMTP receiver did not start (run scripts/test-peers.sh if aiosmtpd is missing): said %q on stdout:\n%s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the SMTP receiver did not say its port within 30s:\n%s", stderr.String())
	}
	rv.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(rv.port))
	c, err := net.DialTimeout("tcp", rv.addr, 10*time.Second)
	if err != nil {
		t.Fatalf("the SMTP receiver does not accept connections: %v\n%s", err, stderr.String())
	}
	c.Close()
	return rv
}

// received returns the messages the receiver accepted, in the order it
// accepted them. It fails the test on a file it cannot read, and so is
// for the test's goroutine only.
func (rv *sendReceiver) received() []sendReceived {
	rv.t.Helper()
	ents, err := os.ReadDir(rv.dir) // sorted by name: by arrival
	if err != nil {
		rv.t.Fatal(err)
	}
	var out []sendReceived
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue // not yet renamed into place
		}
		b, err := os.ReadFile(filepath.Join(rv.dir, e.Name()))
		if err != nil {
			rv.t.Fatal(err)
		}
		var m struct {
			From string   `json:"mail_from"`
			To   []string `json:"rcpt_tos"`
			Data []byte   `json:"data_base64"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			rv.t.Fatalf("receiver's %s: %v", e.Name(), err)
		}
		out = append(out, sendReceived{from: m.From, to: m.To, data: string(m.Data)})
	}
	return out
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
	return snapshot(t, in.queue).Messages
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
		// The fields come from the stored outcome: the server's reply
		// as it came, the server's name; past queuelifetime the last
		// 4xx stays the diagnostic; gw's own verdict is x-gw.
		"Status: 5.1.1\r\nRemote-MTA: dns; mx.good.test\r\nDiagnostic-Code: smtp; 550 5.1.1 ",
		"Status: 5.4.7\r\nRemote-MTA: dns; mx.good.test\r\nDiagnostic-Code: smtp; 4",
		"Status: 5.1.10\r\nDiagnostic-Code: x-gw; domain does not accept mail (null MX, RFC 7505)\r\n",
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

// TestSendRefusalsAfterDataAndAtMail: a reply after the final dot is the
// answer about the whole message, so it is every recipient's outcome: 554
// fails both recipients (the one that is fine included) and bounces them
// in one DSN; 451 defers both. A refusal of MAIL FROM is likewise every
// recipient's: 553 fails, 451 defers. None of these messages is kept by
// the receiver, which gets only the two bounces.
func TestSendRefusalsAfterDataAndAtMail(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1", "sender.test. MX 10 mx.good.test.")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	in.start(t)
	data5 := in.inject(t, "a@sender.test", []string{"ok1@good.test", "data5@good.test"},
		"Subject: refused after DATA\nMessage-ID: <d5@sender.test>\n\nx\n")
	data4 := in.inject(t, "b@sender.test", []string{"ok2@good.test", "data4@good.test"}, "Subject: deferred after DATA\n\nx\n")
	mail5 := in.inject(t, "mail5@sender.test", []string{"ok3@good.test"}, "Subject: sender refused\n\nx\n")
	mail4 := in.inject(t, "mail4@sender.test", []string{"ok4@good.test"}, "Subject: sender deferred\n\nx\n")

	outcome := func(id, rcpt, result, reply string) {
		t.Helper()
		var l []string
		waitFor(t, fmt.Sprintf("%s's %s outcome", rcpt, result), 10*time.Second, func() bool {
			l = in.lines("delivery", "qid="+id, "rcpt="+rcpt, "result="+result)
			return len(l) == 1
		})
		if !strings.Contains(l[0], reply) {
			t.Errorf("%s: reply is not %q: %s", rcpt, reply, l[0])
		}
	}
	outcome(data5, "ok1@good.test", "failed", "554 5.6.0 ")
	outcome(data5, "data5@good.test", "failed", "554 5.6.0 ")
	outcome(data4, "ok2@good.test", "deferred", "451 4.3.0 ")
	outcome(data4, "data4@good.test", "deferred", "451 4.3.0 ")
	outcome(mail5, "ok3@good.test", "failed", "553 5.1.8 ")
	outcome(mail4, "ok4@good.test", "deferred", "451 4.1.8 ")

	waitFor(t, "the two bounces", 10*time.Second, func() bool { return len(rv.received()) >= 2 })
	waitFor(t, "the failed messages to leave the queue", 5*time.Second, func() bool { return len(in.messages(t)) == 2 })
	time.Sleep(300 * time.Millisecond) // nothing else arrives
	dsns := map[string]string{}
	for _, m := range rv.received() {
		if m.from != "" || len(m.to) != 1 {
			t.Fatalf("received %q -> %q, want bounces only", m.from, m.to)
		}
		dsns[m.to[0]] = m.data
	}
	if len(dsns) != 2 {
		t.Fatalf("bounces to %v, want one to a@sender.test and one to mail5@sender.test", dsns)
	}
	for to, wants := range map[string][]string{
		"a@sender.test": {"Final-Recipient: rfc822; ok1@good.test", "Final-Recipient: rfc822; data5@good.test",
			"Status: 5.6.0", "Message-ID: <d5@sender.test>"},
		"mail5@sender.test": {"Final-Recipient: rfc822; ok3@good.test", "Status: 5.1.8"},
	} {
		for _, want := range wants {
			if !strings.Contains(dsns[to], want) {
				t.Errorf("DSN to %s lacks %q:\n%s", to, want, dsns[to])
			}
		}
	}
	for _, m := range in.messages(t) {
		reply := map[string]string{data4: "451 4.3.0 ", mail4: "451 4.1.8 "}[m.ID.String()]
		if reply == "" {
			t.Errorf("message %s still queued", m.ID)
			continue
		}
		for _, rc := range m.Recipients {
			if rc.Attempts != 1 || !strings.Contains(rc.LastError(), reply) {
				t.Errorf("%s: %d attempts, last error %q; want one deferral with %q", rc.Address, rc.Attempts, rc.LastError(), reply)
			}
		}
	}
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
