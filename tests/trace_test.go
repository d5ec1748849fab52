package tests

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTraceReplyOfNextHop (issue 17, one trace): a message through
// gw-smtpd, gw-queued and gw-send to Postfix's smtp-sink. The qid in
// gw-smtpd's 250 is on its accepted line, with the message's Message-ID
// and size, and on gw-send's delivery line, which keeps the reply that
// took the message, where it used to say reply="".
func TestTraceReplyOfNextHop(t *testing.T) {
	sink := startSMTPSink(t, filepath.Join(workDir(t), "sink"))
	_, port, _ := net.SplitHostPort(sink.addr)
	g := startDSNGateway(t, port, map[string]string{})
	talk(t, g.addr,
		"", "220 ",
		"EHLO client.example", "250 ",
		"MAIL FROM:<a@sender.test>", "250 ",
		"RCPT TO:<ok@good.test>", "250 ",
		"DATA", "354 ",
		"Message-ID: <trace.1@sender.test>\nSubject: followed\n\nbody\n.", "250 2.0.0 ok ",
		"QUIT", "221 ")
	log, _ := os.ReadFile(g.smtpd.log)
	m := regexp.MustCompile(` accepted .* qid=(\S+) .* size=(\d+) .*msgid=<trace\.1@sender\.test>`).FindStringSubmatch(string(log))
	if m == nil {
		t.Fatalf("gw-smtpd logged no accepted line with qid, size and msgid:\n%s", log)
	}
	qid := m[1]
	if m[2] == "0" {
		t.Errorf("accepted line says size=0:\n%s", log)
	}
	line := g.send.oneLine(t, "delivery", "qid="+qid, "result=delivered")
	t.Logf("gw-send: %s", line)
	if !regexp.MustCompile(`reply="250 2\.0\.0 \S`).MatchString(line) {
		t.Errorf("delivery line lacks smtp-sink's reply:\n%s", line)
	}

	// The logs as multilog keeps them: each line stamped by tai64n, in a
	// directory of its own. gw-qstat trace finds the message by its qid
	// and by its Message-ID, and tells its life in order.
	need(t, "tai64n")
	logs := filepath.Join(workDir(t), "logs")
	stamp(t, filepath.Join(logs, "smtpd"), string(log))
	stamp(t, filepath.Join(logs, "send"), g.send.log.String())
	for _, id := range []string{qid, "<trace.1@sender.test>", "trace.1@sender.test"} {
		out, err := exec.Command(bin("gw-qstat"), "trace", id, filepath.Join(logs, "smtpd"), filepath.Join(logs, "send")).CombinedOutput()
		if err != nil {
			t.Fatalf("gw-qstat trace %s: %v\n%s", id, err, out)
		}
		want := regexp.MustCompile(`(?s)/smtpd info queued qid=` + qid + ` .*/smtpd info accepted sid=\S+ msg=\S+ qid=` + qid + ` .*msgid=<trace\.1@sender\.test>\n.*/send info delivery qid=` + qid + ` .*result=delivered reply="250 2\.0\.0 Ok"\n`)
		if !want.Match(out) {
			t.Errorf("gw-qstat trace %s:\n%s", id, out)
		}
	}
	out, err := exec.Command(bin("gw-qstat"), "trace", "<nowhere@sender.test>", filepath.Join(logs, "smtpd"), filepath.Join(logs, "send")).CombinedOutput()
	if exitCode(err) != 100 || !strings.Contains(string(out), "no log line names <nowhere@sender.test>") {
		t.Errorf("trace of an unknown Message-ID: %v\n%s", err, out)
	}
	waitFor(t, "smtp-sink to record the message", 5*time.Second, func() bool { return len(sink.transactions()) == 1 })
	if !strings.Contains(sink.transactions()[0], "Message-ID: <trace.1@sender.test>") {
		t.Errorf("smtp-sink got another message:\n%s", sink.transactions()[0])
	}
}

// TestTraceQMTPAcceptedMsgID: gw-qmtpd's accepted line names the
// message's Message-ID and size beside its qid, as gw-smtpd's does.
func TestTraceQMTPAcceptedMsgID(t *testing.T) {
	need(t, "tcpserver")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	cmd := exec.Command("tcpserver", "-1", "-R", "-H", "-l", "gw.example.net", "127.0.0.1", "0", bin("gw-qmtpd"), "--control-dir", in.control)
	cmd.Env = in.env()
	out, _ := cmd.StdoutPipe()
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	msg := "Message-ID: <q.1@example.org>\nSubject: hop\n\nhello\n"
	pkg := qmtpNetstring("\n"+msg) + qmtpNetstring("a@example.org") + qmtpNetstring(qmtpNetstring("b@example.net"))
	conn, err := net.Dial("tcp", "127.0.0.1:"+strings.TrimSpace(port))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, pkg)
	conn.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(resp), ":K") {
		t.Fatalf("response %q, want K", resp)
	}
	var log []byte
	re := regexp.MustCompile(` accepted .*qid=\S+ .*size=` + strconv.Itoa(len(msg)) + `\b.* msgid=<q\.1@example\.org>`)
	waitFor(t, "gw-qmtpd's accepted line", 5*time.Second, func() bool {
		log, _ = os.ReadFile(in.log)
		return re.Match(log)
	})
}

func qmtpNetstring(s string) string { return strconv.Itoa(len(s)) + ":" + s + "," }

// stamp writes text into dir/current as multilog would keep it: through
// tai64n, each line stamped.
func stamp(t *testing.T, dir, text string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("tai64n")
	c.Stdin = strings.NewReader(text)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("tai64n: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "current"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTraceFieldBelievedFromPeersOnly: gw-qmtpd under tcpserver, whose
// rules mark 127.0.0.2 GW_PEER and let the rest of loopback in. The same
// package, carrying an X-Gw-Trace field, from each: the peer's accepted
// line links to the qid it names (prev=), the other's says
// trace=untrusted; a malformed field from the peer is trace=malformed.
// Neither queued message keeps the field.
func TestTraceFieldBelievedFromPeersOnly(t *testing.T) {
	need(t, "tcpserver")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	cdb := in.tcprulesCDB(t, "tcp.qmtp.cdb", "127.0.0.2:allow,GW_PEER=\"\"\n127.:allow\n")
	cmd := exec.Command("tcpserver", "-1", "-R", "-H", "-l", "gw.example.net", "-x", cdb, "127.0.0.1", "0",
		bin("gw-qmtpd"), "--control-dir", in.control)
	cmd.Env = in.env()
	out, _ := cmd.StdoutPipe()
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(port)
	for _, c := range []struct{ tag, from, field, logged string }{
		{"peer", "127.0.0.2", "host=gw1.example.net qid=0669a1b2c3d4e", " prev=gw1.example.net/0669a1b2c3d4e"},
		{"outsider", "127.0.0.1", "host=gw1.example.net qid=0669a1b2c3d4f", " trace=untrusted"},
		{"garbled", "127.0.0.2", "host=gw1.example.net qid=../../x", " trace=malformed"},
	} {
		msg := "X-Gw-Trace: " + c.field + "\nMessage-ID: <" + c.tag + "@example.org>\nSubject: s\n\nbody\n"
		if got := qmtpFrom(t, addr, c.from, qmtpPackage(msg, "a@example.org", "b@example.net")); !strings.HasPrefix(got, "K") {
			t.Fatalf("from %s: %q, want K", c.from, got)
		}
		re := regexp.MustCompile(`(?m)info accepted .*qid=\S+ .*msgid=<` + c.tag + `@example\.org>` + regexp.QuoteMeta(c.logged) + `$`)
		waitFor(t, "the accepted line for the package from "+c.from, 5*time.Second, func() bool {
			log, _ := os.ReadFile(in.log)
			return re.Match(log)
		})
	}
	log, _ := os.ReadFile(in.log)
	if strings.Count(string(log), " prev=") != 1 {
		t.Errorf("prev= believed more than once:\n%s", log)
	}
	msgs := in.messages(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages queued, want 3", len(msgs))
	}
	for _, m := range msgs {
		if body := in.body(t, m); strings.Contains(strings.ToLower(body), "x-gw-trace") || !strings.Contains(body, "Subject: s\n") {
			t.Errorf("queued message keeps the field or lost its header:\n%s", body)
		}
	}
}

// TestTraceSMTPHopToPeer: gw-send delivers by SMTP (smtproutes) to two
// gw-smtpd under tcpserver. The one whose rules mark gw-send's address
// GW_PEER offers XGWTRACE after EHLO, so gw-send puts its qid on top and
// that gw-smtpd logs prev=; the other offers nothing and gets no field, as
// no server on the Internet does.
func TestTraceSMTPHopToPeer(t *testing.T) {
	peer := newSMTPDInstance(t, nil)
	peerAddr := peer.underTcpserver(t, "127.0.0.1:allow,GW_PEER=\"\"\n")
	plain := newSMTPDInstance(t, nil)
	plainAddr := plain.underTcpserver(t, "")
	d := dnsFor(t)
	snd := newSendInstance(t, map[string]string{"dnsserver": d.Addr,
		"smtproutes": "example.com:" + peerAddr + "\na.example.org:" + plainAddr})
	toPeer := snd.inject(t, "a@sender.test", []string{"u@example.com"}, "Subject: to the peer\n\nx\n")
	toPlain := snd.inject(t, "a@sender.test", []string{"u@a.example.org"}, "Subject: to a plain server\n\nx\n")
	snd.start(t)
	waitFor(t, "both deliveries", 15*time.Second, func() bool {
		return len(snd.lines("delivery", "result=delivered")) == 2
	})
	waitFor(t, "the peer's accepted line", 5*time.Second, func() bool {
		log, _ := os.ReadFile(peer.log)
		return regexp.MustCompile(`info accepted .* prev=gw\.test/` + toPeer + `\n`).Match(log)
	})
	log, _ := os.ReadFile(plain.log)
	if !strings.Contains(string(log), "info accepted ") || strings.Contains(string(log), "prev=") || strings.Contains(string(log), "trace=") {
		t.Errorf("the plain server's log shows a trace field (message %s):\n%s", toPlain, log)
	}
	for _, in := range []*smtpdInstance{peer, plain} {
		for _, m := range in.messages(t) {
			if body := in.body(t, m); strings.Contains(strings.ToLower(body), "x-gw-trace") {
				t.Errorf("a queued message keeps the field:\n%s", body)
			}
		}
	}
}

// TestTraceRefusedAtData: a message refused at the dot has no qid. Its
// Message-ID, on gw-smtpd's refused line, finds it with gw-qstat trace,
// with the lines of its own transaction and not those of the message
// accepted before it in the same session; the session's id finds both.
// gw-queue, behind gw-smtpd, logs the abandoned injection as aborted.
func TestTraceRefusedAtData(t *testing.T) {
	need(t, "tai64n")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n", "databytes": "400\n"})
	addr := in.standalone(t, nil)
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250 ",
		"MAIL FROM:<a@sender.test>", "250 ",
		"RCPT TO:<small@inside.test>", "250 ",
		"DATA", "354 ",
		"Message-ID: <small.1@sender.test>\nSubject: small\n\nbody\n.", "250 2.0.0 ok ",
		"MAIL FROM:<b@sender.test>", "250 ",
		"RCPT TO:<big@inside.test>", "250 ",
		"DATA", "354 ",
		"Message-ID: <big.1@sender.test>\nSubject: big\n\n"+strings.Repeat("too much to take\n", 40)+".", "552 ",
		"QUIT", "221 ")
	// The session's end line and gw-queue's come after the replies.
	var log []byte
	waitFor(t, "the session's end and gw-queue's line in the log", 30*time.Second, func() bool {
		log, _ = os.ReadFile(in.log)
		return regexp.MustCompile(`info end sid=\S+ msgs=2 `).Match(log) && regexp.MustCompile(`info aborted uid=|warning refused code=`).Match(log)
	})
	m := regexp.MustCompile(`info refused sid=(\S+) msg=\S+ code=552 reason=databytes .*msgid=<big\.1@sender\.test>`).FindStringSubmatch(string(log))
	if m == nil {
		t.Fatalf("gw-smtpd's refused line does not name the Message-ID:\n%s", log)
	}
	// gw-queue, whose message gw-smtpd abandoned at the refusal, says so
	// as gw-queued would: no warning of a read error.
	if !strings.Contains(string(log), "info aborted uid=") || strings.Contains(string(log), "code=54") {
		t.Errorf("gw-queue does not log the abandoned message as aborted:\n%s", log)
	}
	logs := filepath.Join(workDir(t), "logs")
	stamp(t, filepath.Join(logs, "smtpd"), string(log))

	// $ gw-qstat trace '<big.1@sender.test>' logs/smtpd
	out, err := exec.Command(bin("gw-qstat"), "trace", "<big.1@sender.test>", filepath.Join(logs, "smtpd")).CombinedOutput()
	if err != nil {
		t.Fatalf("gw-qstat trace <big.1@sender.test>: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`(?s)^\S+ \S+ \S+ info connect sid=` + m[1] + ` .*info helo .*` +
		`info mail sid=\S+ from=b@sender\.test .*info rcpt sid=\S+ to=big@inside\.test .*` +
		`info refused .*reason=databytes .*info end sid=` + m[1] + ` `)
	if !want.Match(out) || strings.Contains(string(out), "small") {
		t.Errorf("gw-qstat trace <big.1@sender.test>: not the refused message's life alone:\n%s", out)
	}
	// $ gw-qstat trace SID logs/smtpd: the whole session.
	out, err = exec.Command(bin("gw-qstat"), "trace", m[1], filepath.Join(logs, "smtpd")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "to=small@inside.test") || !strings.Contains(string(out), "reason=databytes") {
		t.Errorf("gw-qstat trace %s: %v: not the whole session:\n%s", m[1], err, out)
	}
}

// TestTraceLeavesResetTransactionOut: a client that gives up a
// transaction with RSET and starts another: gw-smtpd logs the reset, and
// gw-qstat trace of the message sent shows only its own MAIL and RCPT,
// not the abandoned ones; the session's trace keeps everything.
func TestTraceLeavesResetTransactionOut(t *testing.T) {
	need(t, "tai64n")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n"})
	addr := in.standalone(t, nil)
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250 ",
		"MAIL FROM:<abandoned@sender.test>", "250 ",
		"RCPT TO:<never@inside.test>", "250 ",
		"RSET", "250 ",
		"MAIL FROM:<sent@sender.test>", "250 ",
		"RCPT TO:<rcpt@inside.test>", "250 ",
		"DATA", "354 ",
		"Subject: after a reset\n\nbody\n.", "250 2.0.0 ok ",
		"QUIT", "221 ")
	var log []byte
	waitFor(t, "the session's end in the log", 30*time.Second, func() bool {
		log, _ = os.ReadFile(in.log)
		return regexp.MustCompile(`info end sid=\S+ msgs=1 `).Match(log)
	})
	if !regexp.MustCompile(`info reset sid=\S+ rcpts=1`).Match(log) {
		t.Fatalf("gw-smtpd logs no reset line:\n%s", log)
	}
	m := regexp.MustCompile(`info accepted sid=(\S+) msg=\S+ qid=(\S+) from=sent@sender\.test`).FindStringSubmatch(string(log))
	if m == nil {
		t.Fatalf("no accepted line:\n%s", log)
	}
	logs := filepath.Join(workDir(t), "logs")
	stamp(t, filepath.Join(logs, "smtpd"), string(log))

	// $ gw-qstat trace QID logs/smtpd
	out, err := exec.Command(bin("gw-qstat"), "trace", m[2], filepath.Join(logs, "smtpd")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "from=sent@sender.test") || strings.Contains(string(out), "abandoned") ||
		strings.Contains(string(out), "never@") {
		t.Errorf("gw-qstat trace %s: %v: not the message's own transaction:\n%s", m[2], err, out)
	}
	// $ gw-qstat trace SID logs/smtpd: the whole session, reset included.
	out, err = exec.Command(bin("gw-qstat"), "trace", m[1], filepath.Join(logs, "smtpd")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "from=abandoned@sender.test") || !strings.Contains(string(out), "info reset ") {
		t.Errorf("gw-qstat trace %s: %v: not the whole session:\n%s", m[1], err, out)
	}
}
