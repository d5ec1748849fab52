package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedMX is an SMTP server on one loopback address that says what
// its script says: a greeting, then a reply to each command by its verb.
// It counts connections and keeps the commands it got, so that a test
// can tell which MX hosts gw-send tried and how far it went.
type scriptedMX struct {
	addr     string
	greeting string            // the first thing said, e.g. "554 no service"
	replies  map[string]string // verb (EHLO, MAIL, RCPT, DATA, .) to reply; missing: 250 ok

	mu       sync.Mutex
	conns    int
	commands []string
	messages int
}

// startMXs starts one scriptedMX a script on 127.0.0.1, 127.0.0.2, … all
// on one port (MX delivery uses one port: control/smtpport), and returns
// the port. A nil script leaves its address with nothing listening, so
// that a connection there is refused.
func startMXs(t *testing.T, scripts ...*scriptedMX) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		ok := true
		for i := 1; i < len(scripts) && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i+1, port))
			if err != nil {
				ok = false // taken there: another port
				break
			}
			ls = append(ls, l)
		}
		if !ok {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		for i, sc := range scripts {
			if sc == nil {
				ls[i].Close()
				continue
			}
			sc.addr = ls[i].Addr().String()
			t.Cleanup(func() { ls[i].Close() })
			go sc.serve(ls[i])
		}
		return port
	}
	t.Fatal("no port free on 127.0.0.1 to 127.0.0.N")
	return 0
}

func (sc *scriptedMX) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		sc.mu.Lock()
		sc.conns++
		sc.mu.Unlock()
		go sc.session(c)
	}
}

func (sc *scriptedMX) reply(verb string) string {
	if r, ok := sc.replies[verb]; ok {
		return r
	}
	if verb == "DATA" {
		return "354 go on"
	}
	return "250 ok"
}

func (sc *scriptedMX) session(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say(sc.greeting)
	if !strings.HasPrefix(sc.greeting, "220") {
		// a server that refuses the session still answers QUIT
		r.ReadString('\n')
		say("221 bye")
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		verb, _, _ = strings.Cut(verb, ":")
		sc.mu.Lock()
		sc.commands = append(sc.commands, line)
		sc.mu.Unlock()
		switch verb {
		case "QUIT":
			say("221 bye")
			return
		case "EHLO":
			say(sc.reply("EHLO"))
		case "DATA":
			rp := sc.reply("DATA")
			say(rp)
			if !strings.HasPrefix(rp, "354") {
				continue
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			rp = sc.reply(".")
			if strings.HasPrefix(rp, "250") {
				sc.mu.Lock()
				sc.messages++
				sc.mu.Unlock()
			}
			say(rp)
		default:
			say(sc.reply(verb))
		}
	}
}

// seen returns how many connections and messages the server took, and
// its commands.
func (sc *scriptedMX) seen() (conns, messages int, commands []string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.conns, sc.messages, append([]string(nil), sc.commands...)
}

// journalError returns the last error the queue (as gw-qstat reads it)
// holds for rcpt of message id.
func (in *sendInstance) journalError(t *testing.T, id, rcpt string) string {
	t.Helper()
	for _, m := range in.messages(t) {
		if m.ID.String() != id {
			continue
		}
		for _, rc := range m.Recipients {
			if rc.Address == rcpt {
				return rc.LastError()
			}
		}
	}
	t.Fatalf("%s of %s is not in the queue", rcpt, id)
	return ""
}

// oneLine waits for exactly one log line with event and fields, and
// returns it.
func (in *sendInstance) oneLine(t *testing.T, event string, fields ...string) string {
	t.Helper()
	var l []string
	waitFor(t, fmt.Sprintf("a %s line with %v", event, fields), 10*time.Second, func() bool {
		l = in.lines(event, fields...)
		return len(l) >= 1
	})
	time.Sleep(100 * time.Millisecond)
	if l = in.lines(event, fields...); len(l) != 1 {
		t.Fatalf("%d %s lines with %v, want 1:\n%s", len(l), event, fields, strings.Join(l, "\n"))
	}
	return l[0]
}

// TestSendBackupMXNeverToItself (issue 12, finding 1): the gateway is a
// backup MX (preference 20) of backup.test, whose primary (10) is down.
// It does not hand the message to its own listener, the address and port
// control/listeners names: it tries the primary only and defers. For
// best.test, where it is the best MX, the message fails at once, 5.4.6
// "loops back to myself", and the sender gets a DSN saying so.
func TestSendBackupMXNeverToItself(t *testing.T) {
	rv := startReceiver(t)
	own := &scriptedMX{greeting: "220 gw.backup.test ESMTP"}
	port := startMXs(t, own, nil) // 127.0.0.1: the gateway's listener; 127.0.0.2: the primary, down
	d := dnsFor(t,
		"backup.test. MX 10 mx1.backup.test.", "backup.test. MX 20 gw.backup.test.",
		"mx1.backup.test. A 127.0.0.2", "gw.backup.test. A 127.0.0.1",
		"best.test. MX 10 gw.backup.test.", "best.test. MX 20 mx1.backup.test.",
	)
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(port), "dnsserver": d.Addr,
		"smtproutes": fmt.Sprintf("sender.test:[127.0.0.1]:%d", rv.port)})
	listeners := fmt.Sprintf("# face proto address acl\noutside smtp 127.0.0.1:%d tcp.smtp\n", port)
	if err := os.WriteFile(filepath.Join(in.control, "listeners"), []byte(listeners), 0o644); err != nil {
		t.Fatal(err)
	}
	in.start(t)

	backup := in.inject(t, "a@sender.test", []string{"u@backup.test"}, "Subject: primary down\n\nx\n")
	l := in.oneLine(t, "delivery", "qid="+backup, "rcpt=u@backup.test")
	if !strings.Contains(l, "result=deferred") || !strings.Contains(l, "status=4.4.1") ||
		!strings.Contains(l, "mx1.backup.test[127.0.0.2]") {
		t.Errorf("the backup MX's delivery: %s", l)
	}
	if n := len(in.lines("connect", "qid="+backup)); n != 1 {
		t.Errorf("%d connection attempts, want 1 (the primary only):\n%s", n, strings.Join(in.lines("connect"), "\n"))
	}

	best := in.inject(t, "a@sender.test", []string{"u@best.test"}, "Subject: I am the best MX\n\nx\n")
	l = in.oneLine(t, "delivery", "qid="+best, "rcpt=u@best.test")
	for _, want := range []string{"result=failed", "status=5.4.6", "mail for best.test loops back to myself: I am its best MX (gw.backup.test) (#5.4.6)"} {
		if !strings.Contains(l, want) {
			t.Errorf("the best MX's delivery lacks %q: %s", want, l)
		}
	}
	waitFor(t, "the DSN", 10*time.Second, func() bool { return len(rv.received()) == 1 })
	dsn := rv.received()[0]
	for _, want := range []string{"Final-Recipient: rfc822; u@best.test", "Status: 5.4.6", "loops back to myself"} {
		if !strings.Contains(dsn.data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.data)
		}
	}
	if conns, _, _ := own.seen(); conns != 0 {
		t.Errorf("gw-send connected %d times to its own listener", conns)
	}
	if msgs := in.messages(t); len(msgs) != 1 || msgs[0].ID.String() != backup {
		t.Errorf("queue holds %d messages, want the backup MX's only", len(msgs))
	}
}

// TestSendTransientDNSFailureDefers (finding 2): of backup.test's two
// MX hosts, the first's address look-up fails (SERVFAIL) and the
// second's name does not exist (NXDOMAIN). The first may answer later:
// the message is deferred 4.4.3, not bounced for the second's 5.4.4.
func TestSendTransientDNSFailureDefers(t *testing.T) {
	d := dnsFor(t,
		"flaky.test. MX 10 mx1.flaky.test.", "flaky.test. MX 20 mx2.flaky.test.",
		"mx1.flaky.test. A 127.0.0.2",
	)
	d.Fail("mx1.flaky.test.")
	in := newSendInstance(t, map[string]string{"smtpport": "25", "dnsserver": d.Addr})
	in.start(t)
	id := in.inject(t, "", []string{"u@flaky.test"}, "Subject: flaky DNS\n\nx\n")
	l := in.oneLine(t, "delivery", "qid="+id, "rcpt=u@flaky.test")
	for _, want := range []string{"result=deferred", "status=4.4.3", "address lookup for mx1.flaky.test failed"} {
		if !strings.Contains(l, want) {
			t.Errorf("delivery lacks %q: %s", want, l)
		}
	}
	if e := in.journalError(t, id, "u@flaky.test"); !strings.Contains(e, "(#4.4.3)") {
		t.Errorf("journal's last error %q", e)
	}
}

// TestSendGreeting554Defers (finding 3): both MX hosts greet with 554.
// That refuses the hosts, not the message: both are tried, and the
// message is deferred with the status in class 4, as qmail and Postfix
// do, instead of bounced at once.
func TestSendGreeting554Defers(t *testing.T) {
	mx1 := &scriptedMX{greeting: "554 mx1.refusing.test no SMTP service here"}
	mx2 := &scriptedMX{greeting: "554 5.7.1 mx2.refusing.test you are not welcome"}
	port := startMXs(t, mx1, mx2)
	d := dnsFor(t,
		"refusing.test. MX 10 mx1.refusing.test.", "refusing.test. MX 20 mx2.refusing.test.",
		"mx1.refusing.test. A 127.0.0.1", "mx2.refusing.test. A 127.0.0.2",
	)
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(port), "dnsserver": d.Addr})
	in.start(t)
	id := in.inject(t, "", []string{"u@refusing.test"}, "Subject: refused greetings\n\nx\n")
	l := in.oneLine(t, "delivery", "qid="+id, "rcpt=u@refusing.test")
	for _, want := range []string{"result=deferred", "status=4.7.1",
		"mx2.refusing.test[127.0.0.2]:" + fmt.Sprint(port) + " said: 554 5.7.1 mx2.refusing.test you are not welcome (in reply to greeting) (#4.7.1)"} {
		if !strings.Contains(l, want) {
			t.Errorf("delivery lacks %q: %s", want, l)
		}
	}
	for i, mx := range []*scriptedMX{mx1, mx2} {
		if conns, _, _ := mx.seen(); conns != 1 {
			t.Errorf("mx%d: %d connections, want 1", i+1, conns)
		}
	}
	if len(in.messages(t)) != 1 {
		t.Error("the message left the queue")
	}
}

// TestSendInvalidReplyCodes (finding 4): "650" is no SMTP reply. The
// first MX greets with it, the second says it to MAIL: neither is a
// verdict on the message, each a broken host (4.5.0). With a third, sane
// MX the message is delivered there; without, it is deferred.
func TestSendInvalidReplyCodes(t *testing.T) {
	mx1 := &scriptedMX{greeting: "650 x"}
	mx2 := &scriptedMX{greeting: "220 mx2 ESMTP", replies: map[string]string{"MAIL": "650 x"}}
	mx3 := &scriptedMX{greeting: "220 mx3 ESMTP"}
	port := startMXs(t, mx1, mx2, mx3)
	d := dnsFor(t,
		"broken.test. MX 10 mx1.broken.test.", "broken.test. MX 20 mx2.broken.test.",
		"sane.test. MX 10 mx1.broken.test.", "sane.test. MX 20 mx2.broken.test.", "sane.test. MX 30 mx3.sane.test.",
		"mx1.broken.test. A 127.0.0.1", "mx2.broken.test. A 127.0.0.2", "mx3.sane.test. A 127.0.0.3",
	)
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(port), "dnsserver": d.Addr})
	in.start(t)

	broken := in.inject(t, "", []string{"u@broken.test"}, "Subject: broken servers\n\nx\n")
	l := in.oneLine(t, "delivery", "qid="+broken, "rcpt=u@broken.test")
	// the log quotes the reply's quotes
	for _, want := range []string{"result=deferred", "status=4.5.0", `invalid reply \"650 x\" (during MAIL FROM) (#4.5.0)`} {
		if !strings.Contains(l, want) {
			t.Errorf("delivery lacks %q: %s", want, l)
		}
	}
	if c := in.lines("connect", "qid="+broken); len(c) != 1 || !strings.Contains(c[0], `invalid reply \"650 x\" (during greeting)`) {
		t.Errorf("connect lines:\n%s", strings.Join(c, "\n"))
	}

	sane := in.inject(t, "", []string{"u@sane.test"}, "Subject: one sane server\n\nx\n")
	l = in.oneLine(t, "delivery", "qid="+sane, "rcpt=u@sane.test")
	if !strings.Contains(l, "result=delivered") || !strings.Contains(l, "mx3.sane.test[127.0.0.3]") {
		t.Errorf("delivery: %s", l)
	}
	if _, n, _ := mx3.seen(); n != 1 {
		t.Errorf("mx3 took %d messages, want 1", n)
	}
	if _, _, cmds := mx2.seen(); len(cmds) < 2 || !strings.HasPrefix(cmds[len(cmds)-1], "MAIL FROM:") {
		t.Errorf("mx2 got %q: the session should end at the invalid reply", cmds)
	}
}

// TestSendConnectionRefusedDelayNotice (finding 8): every MX refuses the
// connection. The deferral says 4.4.1 (no answer from host) in the log
// and in the journal, and the delay notice's Status is 4.4.1.
func TestSendConnectionRefusedDelayNotice(t *testing.T) {
	rv := startReceiver(t)
	port := startMXs(t, nil, nil, nil) // nothing listens on 127.0.0.2 or .3 at that port
	d := dnsFor(t,
		"down.test. MX 10 mx1.down.test.", "down.test. MX 20 mx2.down.test.",
		"mx1.down.test. A 127.0.0.2", "mx2.down.test. A 127.0.0.3",
	)
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(port), "dnsserver": d.Addr, "delaywarning": "1",
		"smtproutes": fmt.Sprintf("sender.test:[127.0.0.1]:%d", rv.port)})
	id := in.inject(t, "a@sender.test", []string{"u@down.test"}, "Subject: all down\nMessage-ID: <down@sender.test>\n\nx\n")
	time.Sleep(1100 * time.Millisecond) // older than delaywarning at its first try
	in.start(t)
	l := in.oneLine(t, "delivery", "qid="+id, "rcpt=u@down.test")
	for _, want := range []string{"result=deferred", "status=4.4.1", "connection refused (#4.4.1)"} {
		if !strings.Contains(l, want) {
			t.Errorf("delivery lacks %q: %s", want, l)
		}
	}
	if n := len(in.lines("connect", "qid="+id)); n != 2 {
		t.Errorf("%d connection attempts, want 2", n)
	}
	if e := in.journalError(t, id, "u@down.test"); !strings.Contains(e, "connection refused (#4.4.1)") {
		t.Errorf("journal's last error %q", e)
	}
	waitFor(t, "the delay notice", 10*time.Second, func() bool { return len(rv.received()) == 1 })
	dsn := rv.received()[0]
	for _, want := range []string{"Action: delayed", "Final-Recipient: rfc822; u@down.test", "Status: 4.4.1\r\n", "Message-ID: <down@sender.test>"} {
		if !strings.Contains(dsn.data, want) {
			t.Errorf("delay notice lacks %q:\n%s", want, dsn.data)
		}
	}
}
