package tests

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/tests/internal/clamdtest"
)

// scanProxy runs "gw-scan proxy" on a free loopback port in front of
// nextHop, with control files of its own, and returns its address, its
// control directory and its log file.
func scanProxy(t *testing.T, nextHop string, files map[string]string) (addr, control, logPath string) {
	t.Helper()
	dir := workDir(t)
	control = filepath.Join(dir, "control")
	os.MkdirAll(control, 0o755)
	files["me"] = "scanner.example.net\n"
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(control, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	logPath = filepath.Join(dir, "proxy.log")
	logf, _ := os.Create(logPath)
	cmd := exec.Command(bin("gw-scan"), "--control-dir", control, "proxy", "--listen", addr, "--next-hop", nextHop)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("gw-scan proxy log:\n%s", b)
		}
	})
	if err := pollUntil(func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}, 10*time.Second); err != nil {
		t.Fatalf("gw-scan proxy does not listen: %v", err)
	}
	return addr, control, logPath
}

func TestScanProxy(t *testing.T) {
	p := scanners(t)
	inside := newSMTPDInstance(t, nil)
	insideAddr := inside.standalone(t, nil)
	addr, control, logPath := scanProxy(t, insideAddr, map[string]string{
		"clamd": p.clamdSock + "\n", "spamd": p.spamdAddr + "\n",
		"scanpolicy": ":virus:quarantine\n",
	})

	orig := "X-Spam-Flag: NO\nFrom: a@sender.example\nTo: u@example.com\nSubject: proxied\nDate: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <proxied@sender.example>\n\nline one\n.dot line\n"
	want := "From: a@sender.example\nTo: u@example.com\nSubject: proxied\nDate: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <proxied@sender.example>\n\nline one\n.dot line\n"
	// The client's 250 is the inside listener's, queue id and all: the
	// id gw-qstat lists in the inside queue.
	r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, orig)
	m := okQID.FindStringSubmatch(r)
	if m == nil {
		t.Fatalf("end of data through the proxy answered %q, want the inside's 250 2.0.0 ok <qid>", r)
	}
	list, _ := qstatRun(t, nil, 0, "--queue", inside.queue, "list")
	if !strings.Contains(list, m[1]) {
		t.Errorf("the proxy's 250 names %s; gw-qstat list of the inside queue:\n%s", m[1], list)
	}
	msgs := inside.messages(t)
	if len(msgs) != 1 || msgs[0].ID.String() != m[1] {
		t.Fatalf("the proxy's 250 names %s, the inside queue holds %v", m[1], msgs)
	}
	body := inside.body(t, msgs[0])
	if !strings.HasSuffix(body, want) || !strings.Contains(body, "X-Virus-Scanned: gw-scan at scanner.example.net\n") || strings.Contains(body, "X-Spam-Flag") {
		t.Errorf("relayed message:\n%s", body)
	}

	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("pvirus", markerVirus+"\n")); !strings.HasPrefix(r, "250") {
		t.Fatalf("virus through the proxy: %q, want 250 (quarantined)", r)
	}
	if n := len(inside.messages(t)); n != 1 {
		t.Errorf("virus reached the inside queue (%d messages)", n)
	}
	cmd := exec.Command(bin("gw-scan"), "--control-dir", control, "quarantine", "list")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), markerSig) {
		t.Errorf("quarantine list: %v\n%s", err, out)
	}

	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, attachmentMessage("x.exe", "application/octet-stream", []byte("MZ"))); !strings.HasPrefix(r, "554 5.7.1") {
		t.Errorf("banned attachment through the proxy: %q", r)
	}

	// The next hop gone: 451, and nothing held or lost.
	dead, _, _ := scanProxy(t, "127.0.0.1:1", map[string]string{"clamd": p.clamdSock + "\n"})
	if r := sendMessage(t, dead, "a@sender.example", []string{"u@example.com"}, plainMessage("nohop", "hi\n")); !strings.HasPrefix(r, "451") {
		t.Errorf("next hop down: %q, want 451", r)
	}
	log, _ := os.ReadFile(logPath)
	for _, w := range []string{"action=quarantine", "next_hop=" + insideAddr, "reply=", "code=554"} {
		if !bytes.Contains(log, []byte(w)) {
			t.Errorf("proxy log lacks %q:\n%s", w, log)
		}
	}
}

// TestScanCheckedOnce: the outside proxy scans and signs; the inside
// listener's gw-scan, sharing control/scansecret, trusts the signature and
// does not scan again (its clamd is down: a scan would tempfail), while a
// forged signature sent to the inside directly is not trusted.
func TestScanCheckedOnce(t *testing.T) {
	p := scanners(t)
	secret := "0123456789abcdef-shared-secret\n"
	dead := filepath.Join(workDir(t), "no-clamd.sock")
	inside := newSMTPDInstance(t, map[string]string{"clamd": dead + "\n", "scansecret": secret})
	insideAddr := inside.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + inside.control})
	addr, _, _ := scanProxy(t, insideAddr, map[string]string{"clamd": p.clamdSock + "\n", "scansecret": secret})

	if body := sendOnly(t, addr, inside, plainMessage("once", "scanned once\n")); !strings.Contains(body, "X-GW-Scanned: v=1; by=scanner.example.net; mac=") {
		t.Errorf("no token:\n%s", body)
	}
	forged := "X-GW-Scanned: v=1; by=scanner.example.net; mac=00\n" + plainMessage("forged", "trust me\n")
	if r := sendMessage(t, insideAddr, "a@sender.example", []string{"u@example.com"}, forged); !strings.HasPrefix(r, "451") {
		t.Errorf("forged token sent to the inside: %q, want 451 (scanned, clamd down)", r)
	}
	log, _ := os.ReadFile(inside.log)
	if !bytes.Contains(log, []byte("trusted=yes")) {
		t.Errorf("inside log shows no trusted verdict:\n%s", log)
	}
}

// TestScanManPageCommands: the quarantine commands are documented (the
// flags are TestManPagesMatchFlags's).
func TestScanManPageCommands(t *testing.T) {
	page, err := os.ReadFile("../man/gw-scan.8")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"list", "show", "release", "remove"} {
		if !bytes.Contains(page, []byte(".Cm quarantine "+c)) {
			t.Errorf("gw-scan.8 lacks quarantine %s", c)
		}
		out, _ := exec.Command(bin("gw-scan"), "quarantine", "--help").CombinedOutput()
		if !bytes.Contains(out, []byte(c)) {
			t.Errorf("gw-scan quarantine --help lacks %s:\n%s", c, out)
		}
	}
}

// TestScanProxyKeepsNextHop: messages one after another through the proxy
// reuse one connection to the next hop, not a session each; a next hop
// that went away in between is dialled again, and nothing is lost.
func TestScanProxyKeepsNextHop(t *testing.T) {
	inside := newSMTPDInstance(t, nil)
	insideAddr := inside.standalone(t, nil)
	addr, _, _ := scanProxy(t, insideAddr, map[string]string{})
	for i := 0; i < 3; i++ {
		if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("keep", "hi\n")); !strings.HasPrefix(r, "250") {
			t.Fatalf("message %d: %q", i, r)
		}
	}
	if n := len(inside.messages(t)); n != 3 {
		t.Fatalf("%d relayed, want 3", n)
	}
	log, _ := os.ReadFile(inside.log)
	if n := bytes.Count(log, []byte(" helo=scanner.example.net")); n != 1 {
		t.Errorf("%d sessions from the proxy, want 1:\n%s", n, log)
	}

	// The next hop closes idle sessions after a second: the proxy's kept
	// connection is dead when the next message comes, and a fresh one
	// carries it.
	inside2 := newSMTPDInstance(t, map[string]string{"timeoutsmtpd": "1\n"})
	addr2, _, _ := scanProxy(t, inside2.standalone(t, nil), map[string]string{})
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(2500 * time.Millisecond)
		}
		if r := sendMessage(t, addr2, "a@sender.example", []string{"u@example.com"}, plainMessage("stale", "hi\n")); !strings.HasPrefix(r, "250") {
			t.Fatalf("message %d after the next hop's timeout: %q", i, r)
		}
	}
	if n := len(inside2.messages(t)); n != 2 {
		t.Fatalf("%d relayed, want 2", n)
	}
	log, _ = os.ReadFile(inside2.log)
	if n := bytes.Count(log, []byte(" helo=scanner.example.net")); n != 2 {
		t.Errorf("%d sessions from the proxy, want 2 (the stale one replaced):\n%s", n, log)
	}
}

// TestScanProxySessionOfMessages: one client session carries a long
// message, a short one with a forged scan field, a refused one and a
// short one again. The proxy spools a session's messages in one file,
// emptied each time: every message reaches the next hop whole, as its
// own, with nothing of the one before.
func TestScanProxySessionOfMessages(t *testing.T) {
	inside := newSMTPDInstance(t, nil)
	addr, _, _ := scanProxy(t, inside.standalone(t, nil), map[string]string{})

	long := plainMessage("long", strings.Repeat("a long line of the first message, which is the longest\n", 200))
	short := "X-Spam-Flag: YES\n" + plainMessage("short", "short\n")
	banned := attachmentMessage("x.exe", "application/octet-stream", []byte("MZ"))
	last := plainMessage("last", "last\n")
	var script strings.Builder
	script.WriteString("EHLO client.example\r\n")
	for _, m := range []string{long, short, banned, last} {
		script.WriteString("MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n")
		script.WriteString(strings.ReplaceAll(m, "\n", "\r\n") + ".\r\n")
	}
	script.WriteString("QUIT\r\n")
	replies := smtpdDialogue(t, addr, script.String())
	// 220, EHLO, then MAIL, RCPT, DATA and the end of each message, QUIT.
	if len(replies) != 2+4*4+1 {
		t.Fatalf("replies: %q", replies)
	}
	for i, want := range []string{"250", "250", "554 5.7.1", "250"} {
		if r := replies[2+4*i+3]; !strings.HasPrefix(r, want) {
			t.Errorf("message %d: %q, want %s", i, r, want)
		}
	}

	ms := inside.messages(t)
	if len(ms) != 3 {
		t.Fatalf("%d relayed, want 3", len(ms))
	}
	got := map[string]string{}
	for _, m := range ms {
		b := inside.body(t, m)
		for _, s := range []string{"long", "short", "last"} {
			if strings.Contains(b, "\nSubject: "+s+"\n") {
				got[s] = b
			}
		}
	}
	for s, want := range map[string]string{"long": long, "short": plainMessage("short", "short\n"), "last": last} {
		b := got[s]
		if !strings.HasSuffix(b, "\n"+want) || !strings.Contains(b, "X-Virus-Scanned: ") || strings.Contains(b, "X-Spam-Flag") {
			t.Errorf("message %q as relayed:\n%s", s, b)
		}
		if strings.Count(b, "Subject: ") != 1 {
			t.Errorf("message %q holds another's fields:\n%s", s, b)
		}
	}
}

// TestScanProxyInsideRefusesRecipient: the proxy pipelines MAIL, the
// RCPTs and DATA to the inside listener. A recipient the inside refuses
// (not in its rcpthosts) refuses the message to the outside client with
// the inside's enhanced code, although the inside took DATA for the
// other recipient: the proxy drops that half-sent transaction, and the
// inside queue gets nothing. The next message goes through.
func TestScanProxyInsideRefusesRecipient(t *testing.T) {
	inside := newSMTPDInstance(t, nil)
	addr, _, logPath := scanProxy(t, inside.standalone(t, nil), map[string]string{})
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250-PIPELINING",
		"MAIL FROM:<a@sender.example>", "250 ",
		"RCPT TO:<u@example.com>", "250 ",
		"RCPT TO:<x@elsewhere.test>", "250 ", // the proxy takes any: the inside decides
		"DATA", "354 ",
		"Subject: half refused\n\nbody\n.", "554 5.7.1 next hop refused the message",
		"MAIL FROM:<a@sender.example>", "250 ",
		"RCPT TO:<u@example.com>", "250 ",
		"DATA", "354 ",
		"Subject: whole\n\nbody\n.", "250 2.0.0 ok ",
		"QUIT", "221 ")
	msgs := inside.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("inside queue holds %d messages, want the second alone", len(msgs))
	}
	if body := inside.body(t, msgs[0]); !strings.Contains(body, "Subject: whole\n") {
		t.Errorf("inside queue holds:\n%s", body)
	}
	log, _ := os.ReadFile(logPath)
	if !bytes.Contains(log, []byte("RCPT x@elsewhere.test: SMTP error 553: 5.7.1")) {
		t.Errorf("proxy log does not name the refused recipient:\n%s", log)
	}
}

// TestScanProxyChunksToInside: a message for one recipient goes to the
// inside listener as one BDAT chunk, pipelined behind MAIL and RCPT (the
// inside logs it chunked), byte for byte what DATA would have carried:
// lines that begin with a dot keep one dot, none is taken for the end.
// The inside refusing the only recipient refuses the message to the
// client, reads the chunk and drops it; the next message still goes.
func TestScanProxyChunksToInside(t *testing.T) {
	inside := newSMTPDInstance(t, nil)
	addr, _, logPath := scanProxy(t, inside.standalone(t, nil), map[string]string{})
	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250-PIPELINING",
		"MAIL FROM:<a@sender.example>", "250 ",
		"RCPT TO:<x@elsewhere.test>", "250 ",
		"DATA", "354 ",
		"Subject: refused\n\nbody\n.", "554 5.7.1 next hop refused the message",
		"MAIL FROM:<a@sender.example>", "250 ",
		"RCPT TO:<u@example.com>", "250 ",
		"DATA", "354 ",
		"Subject: chunked\n\n..dot line\n..\nQUIT\nend\n.", "250 2.0.0 ok ",
		"QUIT", "221 ")
	msgs := inside.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("inside queue holds %d messages, want the second alone", len(msgs))
	}
	if body := inside.body(t, msgs[0]); !strings.HasSuffix(body, "\nSubject: chunked\n\n.dot line\n.\nQUIT\nend\n") {
		t.Errorf("inside queue holds:\n%s", body)
	}
	insideLog, _ := os.ReadFile(inside.log)
	if !bytes.Contains(insideLog, []byte("chunked=true")) {
		t.Errorf("the inside did not take the message by BDAT:\n%s", insideLog)
	}
	log, _ := os.ReadFile(logPath)
	if !bytes.Contains(log, []byte("RCPT x@elsewhere.test: SMTP error 553: 5.7.1")) {
		t.Errorf("proxy log does not name the refused recipient:\n%s", log)
	}
}

// TestScanProxyClamdRestarted: the proxy keeps its clamd connection open
// from one message to the next (clamd's IDSESSION). clamd restarted
// between two messages leaves the proxy a dead session: the next message
// is scanned all the same, on a new one (the virus is found), and the
// one after it too. A message over the proxy's in-memory spool goes
// through its file whole. clamd gone, a message gets the fail policy's
// 451, and none reaches the inside queue unscanned.
func TestScanProxyClamdRestarted(t *testing.T) {
	need(t, "clamd")
	dir := workDir(t)
	var stop func()
	start := func() {
		t.Helper()
		c, err := clamdtest.Start(dir, markerVirus, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
		stop = c.Stop
	}
	start()
	inside := newSMTPDInstance(t, nil)
	addr, _, logPath := scanProxy(t, inside.standalone(t, nil), map[string]string{"clamd": filepath.Join(dir, "clamd.sock") + "\n"})
	send := func(subject, body, want string) {
		t.Helper()
		if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage(subject, body)); !strings.HasPrefix(r, want) {
			t.Fatalf("message %q: %q, want %s", subject, r, want)
		}
	}

	send("first", "clean\n", "250")
	stop()
	start()
	send("virus after the restart", markerVirus+"\n", "554 5.7.1")
	send("clean after the restart", "clean\n", "250")
	big := strings.Repeat("a line of a message larger than the in-memory spool\n", 6000)
	send("large", big, "250")
	stop()
	send("clamd gone", "clean\n", "451 4.7.1")

	ms := inside.messages(t)
	if len(ms) != 3 {
		t.Fatalf("the inside queue holds %d messages, want 3", len(ms))
	}
	for _, m := range ms {
		b := inside.body(t, m)
		if !strings.Contains(b, "X-Virus-Scanned: gw-scan at scanner.example.net\n") {
			t.Errorf("relayed without clamd's verdict:\n%.400s", b)
		}
		if strings.Contains(b, "Subject: large\n") && !strings.HasSuffix(b, "\n\n"+big) {
			t.Errorf("the large message arrived changed (%d bytes)", len(b))
		}
	}
	log, _ := os.ReadFile(logPath)
	for _, w := range []string{"clamd=" + markerSig, "clamd=error"} {
		if !bytes.Contains(log, []byte(w)) {
			t.Errorf("proxy log lacks %q:\n%s", w, log)
		}
	}
	if n := bytes.Count(log, []byte("clamd=error")); n != 1 {
		t.Errorf("%d clamd errors logged, want 1 (clamd gone):\n%s", n, log)
	}
}

// TestScanProxySpamdOverUnixSocket: spamd named by its unix socket, as
// "unix:PATH" or as a bare path, is asked as over TCP: GTUBE comes out
// tagged by the default policy, with spamd's score.
func TestScanProxySpamdOverUnixSocket(t *testing.T) {
	p := scanners(t)
	for _, spamd := range []string{"unix:" + p.spamdSock, p.spamdSock} {
		inside := newSMTPDInstance(t, nil)
		addr, _, _ := scanProxy(t, inside.standalone(t, nil), map[string]string{"spamd": spamd + "\n"})
		body := sendOnly(t, addr, inside, plainMessage("gtube", gtube+"\n"))
		if !strings.Contains(body, "X-Spam-Flag: YES\n") || !strings.Contains(body, "X-Spam-Status: Yes, score=") {
			t.Errorf("spamd at %s: GTUBE relayed as:\n%s", spamd, body)
		}
	}
}
