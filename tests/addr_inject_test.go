package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qmtp"
	"gw/lib/queue"
)

// These tests try, as an attacker would, to turn an envelope address into
// ESMTP parameters of the next hop (issue 11, finding 1). The recipient
// below has gw.test after its last '@', so relay control saw a local
// domain; written unquoted, the inside host read "v@victim.test" and the
// rest as NOTIFY= and ORCPT= parameters, and relayed to victim.test for
// the gateway it trusts.
const (
	attackRcpt   = "v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x@gw.test"
	attackPath   = `<"v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x"@gw.test>`
	attackSender = "s@gw.test> SIZE=1"
	escRcpt      = "x\x1bc@gw.test" // ESC c resets a terminal that shows it
)

// loopbackAddr returns a free loopback address.
func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// smtpSink is Postfix's smtp-sink on a loopback port, writing each
// transaction it takes, envelope included (X-Mail-Args, X-Rcpt-Args), to a
// file of its own.
type smtpSink struct {
	addr, dir string
}

func startSMTPSink(t *testing.T, dir string) *smtpSink {
	t.Helper()
	s := &smtpSink{addr: loopbackAddr(t), dir: dir}
	os.MkdirAll(dir, 0o777)
	os.Chmod(dir, 0o777)
	args := []string{"-h", "sink.test", "-R", dir, "-d", "%H%M%S.", s.addr, "100"}
	if os.Getuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(need(t, "smtp-sink"), args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "smtp-sink on "+s.addr, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// transactions returns the sink's transactions, each as its dump text.
func (s *smtpSink) transactions() []string {
	ents, _ := os.ReadDir(s.dir)
	var out []string
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(s.dir, e.Name())); err == nil {
			out = append(out, strings.ReplaceAll(string(b), "\r\n", "\n"))
		}
	}
	return out
}

// rcptArgs returns every RCPT argument the sink was given, as written.
func (s *smtpSink) rcptArgs() []string {
	var out []string
	for _, tx := range s.transactions() {
		for _, l := range strings.Split(tx, "\n") {
			if a, ok := strings.CutPrefix(l, "X-Rcpt-Args: "); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// insidePostfix is a private Postfix instance playing the inside host a
// gateway delivers to: it trusts the gateway (mynetworks 127.0.0.0/8),
// forwards gw.test to the mailbox host and victim.test to the victim, both
// smtp-sinks, and refuses every other destination. A test may change
// that with main.cf lines of its own (extra), which replace the default
// ones.
type insidePostfix struct {
	dir, addr      string
	inside, victim *smtpSink
}

// startInsidePostfix starts one at a loopback address of its own.
func startInsidePostfix(t *testing.T, extra ...string) *insidePostfix {
	t.Helper()
	return startInsidePostfixAt(t, loopbackAddr(t), extra...)
}

// startInsidePostfixAt is startInsidePostfix listening at addr.
func startInsidePostfixAt(t *testing.T, addr string, extra ...string) *insidePostfix {
	t.Helper()
	need(t, "postfix")
	if os.Getuid() != 0 {
		t.Fatal("a private Postfix instance needs root to start")
	}
	dir := workDir(t)
	p := &insidePostfix{dir: dir, addr: addr,
		inside: startSMTPSink(t, filepath.Join(dir, "inside")), victim: startSMTPSink(t, filepath.Join(dir, "victim"))}
	etc, data := filepath.Join(dir, "etc"), filepath.Join(dir, "data")
	for _, d := range []string{etc, data, filepath.Join(dir, "spool")} {
		os.MkdirAll(d, 0o755)
	}
	if err := exec.Command("chown", "postfix", data).Run(); err != nil {
		t.Fatalf("chown postfix %s: %v", data, err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	smtpd := regexp.MustCompile(`(?m)^smtp\s+inet\s.*$`)
	if !smtpd.Match(master) {
		t.Fatal("/etc/postfix/master.cf has no smtp inet service to move")
	}
	master = smtpd.ReplaceAll(master, []byte(p.addr+" inet n - n - - smtpd"))
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = inside.test
mydomain = inside.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = gw.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = inline:{ gw.test=smtp:[%[2]s]:%[3]s, victim.test=smtp:[%[4]s]:%[5]s }
default_transport = error:no other destination in this test
smtp_dns_support_level = disabled
smtputf8_enable = no
`, dir, host(p.inside.addr), port(p.inside.addr), host(p.victim.addr), port(p.victim.addr))
	os.WriteFile(filepath.Join(etc, "master.cf"), master, 0o644)
	for _, l := range extra {
		name, _, _ := strings.Cut(l, "=")
		mainCF = regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(strings.TrimSpace(name))+` =.*\n`).ReplaceAllString(mainCF, "") + l + "\n"
	}
	os.WriteFile(filepath.Join(etc, "main.cf"), []byte(mainCF), 0o644)
	if out, err := exec.Command("postfix", "-c", etc, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command("postfix", "-c", etc, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("inside Postfix's log:\n%s", log)
		}
	})
	waitFor(t, "the inside Postfix on "+p.addr, 15*time.Second, func() bool {
		c, err := net.Dial("tcp", p.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// maillog is the inside Postfix's log so far.
func (p *insidePostfix) maillog() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// queueEnvelope runs the real gw-queue on the queue at dir with a raw
// envelope, as any local program may, and returns its exit code and
// stderr.
func queueEnvelope(t *testing.T, dir, sender string, rcpts []string, body string) (int, string) {
	t.Helper()
	return injectEnvelope(t, bin("gw-queue"), []string{"GW_QUEUE=" + dir}, sender, rcpts, body)
}

// injectEnvelope runs program, which speaks qmail-queue's interface, with
// environ added to the test's environment, and returns its exit code and
// standard error.
func injectEnvelope(t *testing.T, program string, environ []string, sender string, rcpts []string, body string) (int, string) {
	t.Helper()
	env := envelope.Envelope{Sender: sender, Recipients: rcpts}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Write(env.Wire())
	w.Close()
	cmd := exec.Command(program)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stdin, cmd.Stdout = strings.NewReader(body), r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// qmtpOffer sends one package to a QMTP server, the way a client on the
// Internet may, and returns the response for each recipient.
func qmtpOffer(t *testing.T, addr, sender string, rcpts ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmtp.Dial(ctx, addr, 5*time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "Subject: qmtp\n\nx\n"
	p, err := c.Send(sender, rcpts, int64(len(msg)), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range resp {
		out = append(out, string(r.Code)+r.Text)
	}
	return out
}

// TestEnvelopePathsNeverBecomeParameters: the attacker's recipient and
// sender, offered to gw-qmtpd from the Internet and to gw-queue by a
// local program, and a stored address no path can carry (as a sibling
// that did not check would leave it), delivered by gw-send to a real
// Postfix that trusts the gateway: nothing reaches victim.test.
func TestEnvelopePathsNeverBecomeParameters(t *testing.T) {
	pf := startInsidePostfix(t)

	// The inside host is the dangerous kind: the path as main wrote it
	// is relayed to victim.test.
	replies := smtpdDialogue(t, pf.addr, "EHLO gw.test\r\nMAIL FROM:<s@gw.test>\r\nRCPT TO:<"+attackRcpt+">\r\nDATA\r\n"+
		"Subject: written unquoted\r\n\r\nx\r\n.\r\nQUIT\r\n")
	if len(replies) < 5 || !strings.HasPrefix(replies[3], "250") {
		t.Fatalf("the inside Postfix took the raw RCPT with %q", replies)
	}
	waitFor(t, "the unquoted path relayed to victim.test", 20*time.Second, func() bool { return len(pf.victim.transactions()) == 1 })

	// gw-qmtpd, from a client without RELAYCLIENT: the '@' inside the
	// local part is sender routing; the sender and ESC cannot be queued.
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "gw.test\n"})
	qaddr := in.qmtpdStandalone(t, nil)
	if got := qmtpOffer(t, qaddr, "s@gw.test", attackRcpt, escRcpt); !strings.HasPrefix(got[0], "Dsender-specified routing") ||
		!strings.HasPrefix(got[1], "Dsorry, that recipient address has bad syntax (#5.1.3)") {
		t.Errorf("gw-qmtpd answered %q, want D for both", got)
	}
	if got := qmtpOffer(t, qaddr, attackSender, "u@gw.test"); !strings.HasPrefix(got[0], "Dunacceptable sender (#5.1.7)") {
		t.Errorf("gw-qmtpd answered the sender %q with %q", attackSender, got)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("gw-qmtpd queued %d messages", n)
	}

	// gw-queue, fd 0 and 1: a local program may name any recipient, and
	// this one is queued to be written quoted; the sender and ESC are
	// refused with 12, permanent.
	d := dnsFor(t)
	snd := newSendInstance(t, map[string]string{"smtproutes": "gw.test:" + strings.Replace(pf.addr, "127.0.0.1:", "[127.0.0.1]:", 1), "dnsserver": d.Addr})
	if code, stderr := queueEnvelope(t, snd.queue, attackSender, []string{"u@gw.test"}, "Subject: s\n\nx\n"); code != 12 {
		t.Errorf("gw-queue exit %d for the sender %q, want 12: %s", code, attackSender, stderr)
	}
	if code, stderr := queueEnvelope(t, snd.queue, "s@gw.test", []string{escRcpt}, "Subject: esc\n\nx\n"); code != 12 || strings.Contains(stderr, "\x1b") {
		t.Errorf("gw-queue exit %d for ESC, want 12; stderr %q", code, stderr)
	}
	if code, stderr := queueEnvelope(t, snd.queue, "s@gw.test", []string{attackRcpt}, "Subject: through gw-queue\n\nx\n"); code != 0 {
		t.Fatalf("gw-queue exit %d: %s", code, stderr)
	}

	// What a sibling that did not check left in the queue: a recipient
	// whose domain holds the parameters, beside a good one.
	q, err := queue.Open(snd.queue)
	if err != nil {
		t.Fatal(err)
	}
	w, err := q.NewMessage(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: left unchecked\n\nx\n"))
	if err := w.Commit(envelope.Envelope{Sender: "s@gw.test", Recipients: []string{"y@gw.test> NOTIFY=NEVER", "ok@gw.test"}}); err != nil {
		t.Fatal(err)
	}
	q.Close()

	snd.start(t)
	// Three deliveries (the attacker's message, ok@gw.test, the bounce
	// to s@gw.test) and one failure.
	waitFor(t, "gw-send's outcomes", 30*time.Second, func() bool {
		return len(snd.lines("delivery", "result=delivered")) == 3 && len(snd.lines("delivery", "result=failed")) == 1
	})
	if l := snd.lines("delivery", "result=failed"); !strings.Contains(l[0], "5.1.3") || !strings.Contains(l[0], "cannot be written") {
		t.Errorf("the unwritable recipient failed with %q, want a 5.1.3 for its path", l[0])
	}
	waitFor(t, "the inside host's mailbox host to get both messages and the bounce", 30*time.Second, func() bool {
		return len(pf.inside.transactions()) == 3
	})
	args := strings.Join(pf.inside.rcptArgs(), "\n")
	if !strings.Contains(args, attackPath) || strings.Contains(args, "NOTIFY=NEVER\n") || !strings.Contains(args, "<s@gw.test>") {
		t.Errorf("the mailbox host was given these RCPTs:\n%s\nwant %s, ok@gw.test and the bounce to s@gw.test", args, attackPath)
	}
	// Postfix has nothing left to send: the victim has the control
	// message alone.
	waitFor(t, "the inside Postfix's queue to empty", 20*time.Second, func() bool {
		return strings.Count(pf.maillog(), ": removed") >= 4
	})
	if v := pf.victim.transactions(); len(v) != 1 || !strings.Contains(v[0], "Subject: written unquoted") {
		t.Errorf("victim.test got %d transactions:\n%s", len(v), strings.Join(v, "\n----\n"))
	}
}

// TestScanProxyKeepsQuotes: gw-scan's proxy relays a quoted local part
// with its quotes, so the next hop reads one address, not parameters;
// ESC is refused at once, permanently.
func TestScanProxyKeepsQuotes(t *testing.T) {
	next := startSMTPSink(t, filepath.Join(workDir(t), "next"))
	addr, _, _ := scanProxy(t, next.addr, map[string]string{})
	replies := smtpdDialogue(t, addr, "EHLO client.test\r\nMAIL FROM:<s@gw.test>\r\n"+
		"RCPT TO:<\"v@victim.test> NOTIFY=NEVER\"@gw.test>\r\nRCPT TO:<"+escRcpt+">\r\nDATA\r\n"+
		"Subject: proxied\r\n\r\nx\r\n.\r\nQUIT\r\n")
	if len(replies) < 7 || !strings.HasPrefix(replies[3], "250") || !strings.HasPrefix(replies[4], "553 5.1.3") || !strings.HasPrefix(replies[6], "250") {
		t.Fatalf("the proxy answered %q", replies)
	}
	waitFor(t, "the next hop to take the message", 20*time.Second, func() bool { return len(next.transactions()) == 1 })
	if got := next.rcptArgs(); len(got) != 1 || got[0] != `<"v@victim.test> NOTIFY=NEVER"@gw.test>` {
		t.Errorf("the next hop was given RCPT %q, want the quoted path", got)
	}
}

// TestESCRefusedByEveryProducer: an ESC in an address, offered to each
// program that may put mail in a queue, is refused permanently, and
// nothing is queued.
func TestESCRefusedByEveryProducer(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "gw.test\n"})
	replies := smtpdDialogue(t, in.standalone(t, nil), "EHLO client.test\r\nMAIL FROM:<s\x1b@gw.test>\r\n"+
		"MAIL FROM:<s@gw.test>\r\nRCPT TO:<"+escRcpt+">\r\nQUIT\r\n")
	if len(replies) < 5 || !strings.HasPrefix(replies[2], "553 5.1.7") || !strings.HasPrefix(replies[4], "501 5.1.3") {
		t.Errorf("gw-smtpd answered %q, want 553 5.1.7 and 501 5.1.3", replies)
	}
	if got := qmtpOffer(t, in.qmtpdStandalone(t, nil), "s\x1b@gw.test", "u@gw.test"); !strings.HasPrefix(got[0], "D") {
		t.Errorf("gw-qmtpd answered an ESC sender with %q", got)
	}
	if code, stderr := queueEnvelope(t, in.queue, "s@gw.test", []string{escRcpt}, "x\n"); code != 12 {
		t.Errorf("gw-queue exit %d, want 12: %s", code, stderr)
	}
	// gw-scan's wrapper, in front of gw-queue as QMAILQUEUE.
	scanEnv := []string{"GW_CONTROL_DIR=" + in.control, "GW_QUEUE=" + in.queue}
	if code, stderr := injectEnvelope(t, bin("gw-scan"), scanEnv, "s@gw.test", []string{escRcpt}, "x\n"); code != 12 {
		t.Errorf("gw-scan (wrapper) exit %d, want 12: %s", code, stderr)
	}
	sock := filepath.Join(in.dir, "queued.sock")
	startQueued(t, in.queue, sock)
	c, err := inject.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := c.Inject(strings.NewReader("x\n"), envelope.Envelope{Sender: "s@gw.test", Recipients: []string{escRcpt}}); code != 12 {
		t.Errorf("gw-queued answered %d, %v; want 12", code, err)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}
