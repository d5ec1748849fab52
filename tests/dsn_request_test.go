package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dsnGateway is gw-smtpd and gw-send on one queue: what a client asks of
// DSN at the door is what gw-send does at the other end. good.test and
// sender.test both have their MX at next, the next hop's port.
type dsnGateway struct {
	smtpd *smtpdInstance
	send  *sendInstance
	addr  string // gw-smtpd's
}

func startDSNGateway(t *testing.T, next string, control map[string]string) *dsnGateway {
	t.Helper()
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1", "sender.test. MX 10 mx.good.test.")
	control["smtpport"] = next
	control["dnsserver"] = d.Addr
	g := &dsnGateway{send: newSendInstance(t, control)}
	g.smtpd = newSMTPDInstance(t, map[string]string{"rcpthosts": "good.test\n"})
	g.smtpd.queue = g.send.queue
	g.addr = g.smtpd.standalone(t, nil)
	g.send.start(t)
	return g
}

// talk holds a dialogue with an SMTP server at addr: the lines alternate
// between what the client says ("" for nothing, at the greeting) and the
// start of the server's reply to it, any of whose lines may match. A
// message's text is sent as given, its lines ending in CRLF.
func talk(t *testing.T, addr string, lines ...string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i+1 < len(lines); i += 2 {
		say, want := lines[i], lines[i+1]
		if say != "" {
			fmt.Fprintf(c, "%s\r\n", strings.ReplaceAll(say, "\n", "\r\n"))
		}
		var reply []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("C: %s\nS: %s\nthen %v, want %q", say, strings.Join(reply, "\nS: "), err, want)
			}
			reply = append(reply, strings.TrimRight(l, "\r\n"))
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		matched := false
		for _, r := range reply {
			matched = matched || strings.HasPrefix(r, want)
		}
		if !matched {
			t.Fatalf("C: %s\nS: %s\nwant a reply starting %q", say, strings.Join(reply, "\nS: "), want)
		}
	}
}

// TestDSNHonouredWithoutDSNNextHop: the next hop (aiosmtpd, which
// refuses bad… and takes the rest) does not offer DSN, so gw-send does
// what each recipient's NOTIFY asked:
//
//   - bad@, NOTIFY=NEVER: refused by the next hop, and no bounce;
//   - bad2@, NOTIFY=FAILURE with ORCPT, RET=HDRS and ENVID: a bounce with
//     Original-Recipient and Original-Envelope-Id, headers only;
//   - ok@, NOTIFY=SUCCESS: delivered, and a success notice, Action: relayed;
//   - a second message to bad3@, NOTIFY=NEVER alone: no bounce at all;
//   - a third to bad4@, RET=FULL and no NOTIFY: a bounce with the message.
func TestDSNHonouredWithoutDSNNextHop(t *testing.T) {
	rv := startReceiver(t)
	g := startDSNGateway(t, fmt.Sprint(rv.port), map[string]string{})
	talk(t, g.addr,
		"", "220 ",
		"EHLO client.example", "250-DSN",
		"MAIL FROM:<a@sender.test> RET=HDRS ENVID=QQ314159+2Bx", "250 ",
		"RCPT TO:<bad@good.test> NOTIFY=NEVER", "250 ",
		"RCPT TO:<bad2@good.test> NOTIFY=FAILURE ORCPT=rfc822;list+2Bbad2@sender.test", "250 ",
		"RCPT TO:<ok@good.test> NOTIFY=SUCCESS ORCPT=rfc822;ok@sender.test", "250 ",
		"DATA", "354 ",
		"Subject: one\nMessage-ID: <one@sender.test>\n\nthe first body\n.", "250 ",
		"MAIL FROM:<a@sender.test>", "250 ",
		"RCPT TO:<bad3@good.test> NOTIFY=NEVER", "250 ",
		"DATA", "354 ",
		"Subject: two\n\nthe second body\n.", "250 ",
		"MAIL FROM:<a@sender.test> RET=FULL", "250 ",
		"RCPT TO:<bad4@good.test>", "250 ",
		"DATA", "354 ",
		"Subject: three\n\nthe third body\n.", "250 ",
		"QUIT", "221 ")

	waitFor(t, "the queue to empty", 10*time.Second, func() bool {
		return len(g.send.lines("end")) == 3+3 && len(g.send.messages(t)) == 0 // three messages, three reports
	})
	time.Sleep(300 * time.Millisecond)
	got := rv.received()
	var delivered, success, bounceHdrs, bounceFull *sendReceived
	for i := range got {
		m := &got[i]
		switch {
		case m.from == "a@sender.test":
			delivered = m
		case strings.Contains(m.data, "(Success)"):
			success = m
		case strings.Contains(m.data, "bad2@good.test"):
			bounceHdrs = m
		case strings.Contains(m.data, "bad4@good.test"):
			bounceFull = m
		}
	}
	if len(got) != 4 || delivered == nil || success == nil || bounceHdrs == nil || bounceFull == nil {
		for _, m := range got {
			t.Logf("received %q -> %q:\n%s", m.from, m.to, m.data)
		}
		t.Fatalf("%d messages at the next hop, want the message, a success notice and two bounces", len(got))
	}
	if len(delivered.to) != 1 || delivered.to[0] != "ok@good.test" {
		t.Errorf("message delivered to %q", delivered.to)
	}
	expect := func(what string, m *sendReceived, wants []string, unwanted []string) {
		t.Helper()
		if m.from != "" || len(m.to) != 1 || m.to[0] != "a@sender.test" {
			t.Errorf("%s envelope %q -> %q", what, m.from, m.to)
		}
		for _, w := range wants {
			if !strings.Contains(m.data, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, m.data)
			}
		}
		for _, u := range unwanted {
			if strings.Contains(m.data, u) {
				t.Errorf("%s has %q:\n%s", what, u, m.data)
			}
		}
	}
	expect("success notice", success, []string{
		"Original-Envelope-Id: QQ314159+x", "Original-Recipient: rfc822;ok@sender.test",
		"Final-Recipient: rfc822; ok@good.test", "Action: relayed", "Status: 2.0.0",
		"Content-Type: text/rfc822-headers", "Message-ID: <one@sender.test>",
	}, []string{"bad@good.test", "bad2@good.test", "the first body"})
	expect("bounce of the first message", bounceHdrs, []string{
		"Original-Envelope-Id: QQ314159+x", "Original-Recipient: rfc822;list+bad2@sender.test",
		"Final-Recipient: rfc822; bad2@good.test", "Action: failed", "Status: 5.1.1",
		"Content-Type: text/rfc822-headers", "Message-ID: <one@sender.test>",
	}, []string{"bad@good.test", "ok@good.test", "the first body"})
	expect("bounce of the third message", bounceFull, []string{
		"Final-Recipient: rfc822; bad4@good.test", "Content-Type: message/rfc822", "the third body",
	}, []string{"Original-Envelope-Id", "Original-Recipient"})
	for _, rcpt := range []string{"bad@good.test", "bad3@good.test"} {
		if len(g.send.lines("bounce_suppressed", "rcpt="+rcpt, "reason=notify", "notify=NEVER")) != 1 {
			t.Errorf("no bounce_suppressed line for %s", rcpt)
		}
	}
	if n := len(g.send.lines("success_notice")); n != 1 {
		t.Errorf("%d success_notice lines, want 1", n)
	}
}

// TestDSNPassedOnToPostfix: the next hop is Postfix's smtp-sink, which
// offers DSN: it gets RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT,
// and gw sends no success notice of its own (the next hop has the
// request now).
func TestDSNPassedOnToPostfix(t *testing.T) {
	sink := startSMTPSink(t, filepath.Join(workDir(t), "sink"))
	_, port, _ := net.SplitHostPort(sink.addr)
	g := startDSNGateway(t, port, map[string]string{})
	talk(t, g.addr,
		"", "220 ",
		"EHLO client.example", "250-DSN",
		"MAIL FROM:<a@sender.test> RET=HDRS ENVID=QQ2", "250 ",
		"RCPT TO:<ok@good.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;ok@sender.test", "250 ",
		"RCPT TO:<plain@good.test>", "250 ",
		"DATA", "354 ",
		"Subject: passed on\n\nbody\n.", "250 ",
		"QUIT", "221 ")
	waitFor(t, "the message to leave the queue", 10*time.Second, func() bool { return len(g.send.lines("end")) == 1 })
	time.Sleep(300 * time.Millisecond)
	txs := sink.transactions()
	if len(txs) != 1 {
		t.Fatalf("%d transactions at smtp-sink, want 1 (no success notice)", len(txs))
	}
	for _, want := range []string{
		"X-Mail-Args: <a@sender.test> BODY=8BITMIME RET=HDRS ENVID=QQ2\n",
		"X-Rcpt-Args: <ok@good.test> NOTIFY=SUCCESS,DELAY ORCPT=RFC822;ok@sender.test\n",
		"X-Rcpt-Args: <plain@good.test>\n",
	} {
		if !strings.Contains(txs[0], want) {
			t.Errorf("smtp-sink's record lacks %q:\n%s", want, txs[0])
		}
	}
	if n := len(g.send.lines("success_notice")); n != 0 {
		t.Errorf("%d success notices from gw-send, want none: the next hop took NOTIFY", n)
	}
}

// TestDSNThroughScanProxy: gw-scan's SMTP proxy offers DSN and hands the
// parameters, checked, to its next hop (Postfix's smtp-sink), so that a
// NOTIFY=NEVER does not become a bounce one hop further in; a bad one is
// refused.
func TestDSNThroughScanProxy(t *testing.T) {
	sink := startSMTPSink(t, filepath.Join(workDir(t), "next"))
	addr, _, _ := scanProxy(t, sink.addr, map[string]string{})
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250-DSN",
		"MAIL FROM:<a@sender.test> RET=FULL ENVID=P+2B1", "250 ",
		"RCPT TO:<u@good.test> NOTIFY=NEVER", "250 ",
		"RCPT TO:<v@good.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;v+2Bold@good.test", "250 ",
		"RCPT TO:<w@good.test> NOTIFY=NEVER,FAILURE", "501 5.5.4 ",
		"RCPT TO:<x@good.test>", "250 ",
		"DATA", "354 ",
		"Subject: proxied\n\nbody\n.", "250 ",
		"QUIT", "221 ")
	waitFor(t, "the next hop to take the message", 20*time.Second, func() bool { return len(sink.transactions()) == 1 })
	tx := sink.transactions()[0]
	for _, want := range []string{
		"X-Mail-Args: <a@sender.test> BODY=8BITMIME RET=FULL ENVID=P+2B1\n", // BODY= whenever offered
		"X-Rcpt-Args: <u@good.test> NOTIFY=NEVER\n",
		// ORCPT's address type as the client wrote it (RFC 3461: any case).
		"X-Rcpt-Args: <v@good.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;v+2Bold@good.test\n",
		"X-Rcpt-Args: <x@good.test>\n",
	} {
		if !strings.Contains(tx, want) {
			t.Errorf("smtp-sink's record lacks %q:\n%s", want, tx)
		}
	}
}

// TestDSNDelayNotice: with control/delaywarning 1 s, a deferred
// recipient that asked NOTIFY=FAILURE gets no delay notice, one that
// asked NOTIFY=DELAY does.
func TestDSNDelayNotice(t *testing.T) {
	rv := startReceiver(t)
	g := startDSNGateway(t, fmt.Sprint(rv.port), map[string]string{"delaywarning": "1"})
	talk(t, g.addr,
		"", "220 ",
		"EHLO client.example", "250-DSN",
		"MAIL FROM:<a@sender.test>", "250 ",
		"RCPT TO:<later1@good.test> NOTIFY=FAILURE", "250 ",
		"RCPT TO:<later2@good.test> NOTIFY=DELAY,FAILURE", "250 ",
		"DATA", "354 ",
		"Subject: slow\n\nx\n.", "250 ",
		"QUIT", "221 ")
	deferred := func(n int) func() bool {
		return func() bool { return len(g.send.lines("delivery", "result=deferred")) == n }
	}
	waitFor(t, "the first deferrals", 5*time.Second, deferred(2))
	time.Sleep(1200 * time.Millisecond)
	g.send.signal(syscall.SIGALRM)
	waitFor(t, "the second deferrals", 5*time.Second, deferred(4))
	waitFor(t, "the delay notice", 5*time.Second, func() bool { return len(rv.received()) == 1 })
	time.Sleep(300 * time.Millisecond)
	got := rv.received()
	if len(got) != 1 {
		t.Fatalf("%d notices, want 1", len(got))
	}
	if !strings.Contains(got[0].data, "Final-Recipient: rfc822; later2@good.test") || strings.Contains(got[0].data, "later1@") {
		t.Errorf("delay notice should name later2@ alone:\n%s", got[0].data)
	}
}

// TestDSNStoredThroughGwQueued: through gw-queued's socket, as the
// listeners use it, the DSN parameters are stored with the message and
// each recipient; a bad one is refused at the door, naming it.
func TestDSNStoredThroughGwQueued(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	sock := filepath.Join(in.dir, "inject.sock")
	qd := exec.Command(bin("gw-queued"), "--queue", in.queue, "--socket", sock)
	qd.Stderr = os.Stderr
	if err := qd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qd.Process.Kill(); qd.Wait() }()
	waitFor(t, "gw-queued's socket", 5*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	addr := in.standalone(t, []string{"GW_QUEUED=" + sock})
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250-DSN",
		"MAIL FROM:<s@sender.example> RET=FULL ENVID=E+2B1", "250 ",
		"RCPT TO:<u@example.com> NOTIFY=NEVER,SUCCESS", "501 5.5.4 ",
		"RCPT TO:<u@example.com> NOTIFY=SUCCESS NOTIFY=FAILURE", "501 5.5.4 ",
		"RCPT TO:<u@example.com> NOTIFY=DELAY,SUCCESS ORCPT=rfc822;u+2Bold@example.com", "250 ",
		"RCPT TO:<v@example.com>", "250 ",
		"DATA", "354 ",
		"Subject: stored\n\nbody\n.", "250 ",
		"QUIT", "221 ")
	msgs := in.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	m := msgs[0]
	if m.DSN.Ret.String() != "FULL" || m.DSN.EnvID != "E+1" {
		t.Errorf("message's DSN %+v", m.DSN)
	}
	if len(m.Recipients) != 2 {
		t.Fatalf("recipients %+v", m.Recipients)
	}
	if u := m.Recipients[0].DSN; u.String() != "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+2Bold@example.com" {
		t.Errorf("u@'s DSN %q", u.String())
	}
	if v := m.Recipients[1].DSN; !v.IsZero() {
		t.Errorf("v@'s DSN %q, want none", v.String())
	}
}

// TestDSNItemsCheckedByGwQueue: gw-queue trusts no injector's DSN items
// more than a client's: NOTIFY=NEVER,SUCCESS from a program is refused
// with 91 and nothing is queued; a well-formed item is queued.
func TestDSNItemsCheckedByGwQueue(t *testing.T) {
	in := newSendInstance(t, map[string]string{})
	queue := func(env string) (int, string) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		w.WriteString(env)
		w.Close()
		cmd := exec.Command(bin("gw-queue"))
		cmd.Env = append(os.Environ(), "GW_QUEUE="+in.queue)
		cmd.Stdin = strings.NewReader("Subject: x\n\nbody\n")
		cmd.Stdout = r
		var out strings.Builder
		cmd.Stderr = &out
		cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String()
	}
	if code, out := queue("Fa@sender.test\x00Tb@good.test\x00NNOTIFY=NEVER,SUCCESS\x00\x00"); code != 91 {
		t.Errorf("bad NOTIFY item: exit %d, want 91\n%s", code, out)
	}
	if code, out := queue("Fa@sender.test\x00NNOTIFY=NEVER\x00Tb@good.test\x00\x00"); code != 91 {
		t.Errorf("N item after F: exit %d, want 91\n%s", code, out)
	}
	for name, env := range map[string]string{
		"R item with a value":      "Fa@sender.test\x00Ryes\x00Tb@good.test\x00\x00",
		"R item twice":             "Fa@sender.test\x00R\x00R\x00Tb@good.test\x00\x00",
		"R item after a recipient": "Fa@sender.test\x00Tb@good.test\x00R\x00\x00",
	} {
		if code, out := queue(env); code != 91 {
			t.Errorf("%s: exit %d, want 91\n%s", name, code, out)
		}
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued from refused envelopes", n)
	}
	if code, out := queue("Fa@sender.test\x00DENVID=x\x00Tb@good.test\x00NNOTIFY=NEVER\x00\x00"); code != 0 {
		t.Fatalf("good DSN items: exit %d\n%s", code, out)
	}
	if m := in.messages(t); len(m) != 1 || m[0].DSN.EnvID != "x" || m[0].Recipients[0].DSN.String() != "NOTIFY=NEVER" || m[0].RequireTLS {
		t.Errorf("queued %+v", m)
	}
	// REQUIRETLS after the D item: kept, with the DSN parameters.
	if code, out := queue("Fa@sender.test\x00DENVID=y\x00R\x00Tb@good.test\x00\x00"); code != 0 {
		t.Fatalf("D and R items: exit %d\n%s", code, out)
	}
	var found bool
	for _, m := range in.messages(t) {
		if m.DSN.EnvID == "y" {
			found = m.RequireTLS
		}
	}
	if !found {
		t.Errorf("the R item was not kept: %+v", in.messages(t))
	}
}
