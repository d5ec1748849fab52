package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/queue"
	"gw/lib/runtimetune"
)

// smtpdInstance is an instance directory for gw-smtpd: control/ with the
// given files, an initialised queue, and a log file for the program's
// stderr.
type smtpdInstance struct {
	dir, control, queue, log string
	cmd                      *exec.Cmd // the last process start started
	seen                     []byte    // the log as a test last read it
}

func newSMTPDInstance(t *testing.T, files map[string]string) *smtpdInstance {
	t.Helper()
	dir := workDir(t)
	in := &smtpdInstance{dir: dir, control: filepath.Join(dir, "control"), queue: filepath.Join(dir, "queue"), log: filepath.Join(dir, "smtpd.log")}
	base := map[string]string{"me": "gw.example.net\n", "rcpthosts": "example.com\n.example.org\n"}
	for k, v := range files {
		base[k] = v
	}
	for name, body := range base {
		p := filepath.Join(in.control, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(bin("gw-queue"), "--init", in.queue).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v\n%s", err, out)
	}
	return in
}

// env is the environment gw-smtpd runs with: its queue, plus extra.
func (in *smtpdInstance) env(extra ...string) []string {
	return append(append(os.Environ(), "GW_QUEUE="+in.queue), extra...)
}

// startProcess starts cmd with stderr appended to the instance's log,
// stops it with the test, and returns the address it prints or listens on.
func (in *smtpdInstance) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	logf, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(in.log)
			t.Logf("gw-smtpd log:\n%s", b)
		}
	})
}

// underTcpserver runs gw-smtpd under the real tcpserver on a free loopback
// port, with tcprules' database when rules is not empty, and returns the
// address.
func (in *smtpdInstance) underTcpserver(t *testing.T, rules string, args ...string) string {
	t.Helper()
	need(t, "tcpserver")
	argv := []string{"-1", "-R", "-H", "-l", "gw.example.net"}
	if rules != "" {
		need(t, "tcprules")
		cdb := filepath.Join(in.dir, "tcp.smtp.cdb")
		c := exec.Command("tcprules", cdb, cdb+".tmp")
		c.Stdin = strings.NewReader(rules)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("tcprules: %v\n%s", err, out)
		}
		argv = append(argv, "-x", cdb)
	}
	argv = append(argv, "127.0.0.1", "0", bin("gw-smtpd"), "--control-dir", in.control)
	cmd := exec.Command("tcpserver", append(argv, args...)...)
	cmd.Env = in.env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("tcpserver printed no port: %v", err)
	}
	return "127.0.0.1:" + strings.TrimSpace(port)
}

// standalone runs gw-smtpd listening itself on a free loopback port.
func (in *smtpdInstance) standalone(t *testing.T, env []string, args ...string) string {
	t.Helper()
	return in.listener(t, "gw-smtpd", env, args...)
}

// listener runs program (gw-smtpd or gw-qmtpd) listening itself on a free
// loopback port, in the instance (control, queue, log) with extra
// environment, and returns the address once it answers.
func (in *smtpdInstance) listener(t *testing.T, program string, env []string, args ...string) string {
	t.Helper()
	return in.listenerOn(t, "127.0.0.1", program, env, args...)
}

// listenerOn is listener on a free port of the loopback address ip, as a
// second host of a site stands on an address of its own.
func (in *smtpdInstance) listenerOn(t *testing.T, ip, program string, env []string, args ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin(program), append([]string{"--control-dir", in.control, "--listen", addr}, args...)...)
	cmd.Env = in.env(env...)
	in.start(t, cmd)
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not listen on %s", program, addr)
	return ""
}

// swaks runs swaks against addr and returns its transcript.
func swaks(t *testing.T, addr string, args ...string) string {
	t.Helper()
	need(t, "swaks")
	host, port, _ := net.SplitHostPort(addr)
	argv := append([]string{"--server", host, "--port", port, "--helo", "client.example", "--timeout", "20"}, args...)
	out, _ := exec.Command("swaks", argv...).CombinedOutput()
	return string(out)
}

// replyTo returns the server's reply to the last command in a swaks
// transcript that begins with command, plain or over TLS.
func replyTo(transcript, command string) string {
	lines := strings.Split(transcript, "\n")
	reply := ""
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "-> "+command) && !strings.HasPrefix(l, "~> "+command) {
			continue
		}
		for _, r := range lines[i+1:] {
			if r = strings.TrimSpace(r); strings.HasPrefix(r, "<") {
				reply = strings.TrimSpace(strings.TrimLeft(r, "<-~* "))
				break
			}
		}
	}
	return reply
}

func (in *smtpdInstance) messages(t *testing.T) []*queue.Message {
	t.Helper()
	return snapshot(t, in.queue).Messages
}

// snapshot reads the queue at dir as gw-qstat does: no lock, nothing
// written.
func snapshot(t *testing.T, dir string) *queue.Snapshot {
	t.Helper()
	q, err := queue.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatalf("snapshot of %s: %v", dir, err)
	}
	return snap
}

func (in *smtpdInstance) body(t *testing.T, m *queue.Message) string {
	t.Helper()
	q, err := queue.OpenReadOnly(in.queue)
	if err != nil {
		t.Fatal(err)
	}
	r, err := q.OpenBody(m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSMTPDUnderTcpserverQueues(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.underTcpserver(t, "")
	out := swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@example.com,carol@a.example.org",
		"--header", "Subject: e2e")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0 ok ") {
		t.Fatalf("end of data answered %q\n%s", r, out)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Sender != "alice@sender.example" || len(m.Recipients) != 2 ||
		m.Recipients[0].Address != "bob@example.com" || m.Recipients[1].Address != "carol@a.example.org" {
		t.Errorf("queued envelope %+v", m)
	}
	body := in.body(t, m)
	re := regexp.MustCompile(`(?m)^Received: from unknown \(HELO client\.example\) \(127\.0\.0\.1\)\n  by gw\.example\.net \(gw-smtpd\) with ESMTP id \S+; .* -0000\n`)
	if !re.MatchString(body) || !strings.Contains(body, "\nSubject: e2e\n") || strings.Contains(body, "\r") {
		t.Errorf("stored message:\n%s", body)
	}
	log, _ := os.ReadFile(in.log)
	for _, want := range []string{"info connect sid=", "info rcpt sid=", "to=bob@example.com result=accept reason=rcpthosts", "info accepted sid="} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestSMTPDRelayTricks tries every way of steering mail elsewhere through
// an untrusted session under tcpserver, then the same from a client that
// tcprules lets relay.
func TestSMTPDRelayTricks(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.underTcpserver(t, "")
	tricks := []struct{ rcpt, want string }{
		{"<victim@evil.example>", "553 5.7.1"},
		{"<victim%evil.example@example.com>", "553 5.7.1"},
		{"<evil.example!victim@example.com>", "553 5.7.1"},
		{`<"victim@evil.example"@example.com>`, "553 5.1.3"},
		{"<@example.com:victim@evil.example>", "553 5.7.1"},
		{"<victim@evil.example@example.com>", "501 5.1.3"},
		{"<victim@[127.0.0.1]>", "553 5.7.1"},
		{"<victim@[IPv6:::1]>", "553 5.7.1"},
		{"<victim@evil.example.>", "553 5.7.1"},
		{"<victim@notexample.com>", "553 5.7.1"},
		{"<victim@example.org>", "553 5.7.1"},
		{"<victim@example.com.evil.example>", "553 5.7.1"},
	}
	var script strings.Builder
	script.WriteString("EHLO client.example\r\nMAIL FROM:<s@sender.example>\r\n")
	for _, tr := range tricks {
		script.WriteString("RCPT TO:" + tr.rcpt + "\r\n")
	}
	script.WriteString("RCPT TO:<postmaster>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
	replies := smtpdDialogue(t, addr, script.String())
	// greeting, EHLO, MAIL, the tricks, postmaster, DATA 354, end, QUIT
	if len(replies) != 3+len(tricks)+4 {
		t.Fatalf("replies %q", replies)
	}
	for i, tr := range tricks {
		if got := replies[3+i]; !strings.HasPrefix(got, tr.want+" ") {
			t.Errorf("RCPT TO:%s answered %q, want %s", tr.rcpt, got, tr.want)
		}
	}
	if got := replies[3+len(tricks)]; !strings.HasPrefix(got, "250 2.0.0") {
		t.Errorf("RCPT TO:<postmaster> answered %q", got)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || len(msgs[0].Recipients) != 1 || msgs[0].Recipients[0].Address != "postmaster@gw.example.net" {
		t.Fatalf("queued %+v, want only postmaster@gw.example.net", msgs)
	}

	// RELAYCLIENT from tcprules: the same tcpserver, other rules.
	relay := newSMTPDInstance(t, nil)
	raddr := relay.underTcpserver(t, "127.0.0.1:allow,RELAYCLIENT=\"\"\n:deny\n")
	out := swaks(t, raddr, "--from", "s@sender.example", "--to", "someone@elsewhere.example")
	if r := replyTo(out, "RCPT TO"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("relay client's RCPT answered %q\n%s", r, out)
	}
	if msgs := relay.messages(t); len(msgs) != 1 {
		t.Errorf("relay client's message not queued")
	}
}

// smtpdDialogue sends script to addr in one write (pipelined) and returns
// the final line of every reply.
func smtpdDialogue(t *testing.T, addr, script string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil { // the greeting, before talking
		t.Fatal(err)
	}
	replies := []string{"220"}
	io.WriteString(c, script)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return replies
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		replies = append(replies, strings.TrimRight(line, "\r\n"))
	}
}

func TestSMTPDStandaloneACL(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	db := filepath.Join(in.dir, "tcp.smtp.db")
	c := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	c.Stdin = strings.NewReader("127.0.0.2:deny\n127.0.0.1:allow,RELAYCLIENT=\"\",DATABYTES=\"5000\"\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	addr := in.standalone(t, nil, "--acl", db)
	out := swaks(t, addr, "--from", "s@sender.example", "--to", "x@elsewhere.example", "--ehlo", "client.example")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("relay through the ACL's RELAYCLIENT: %q\n%s", r, out)
	}
	if !regexp.MustCompile(`250[- ]SIZE 5000`).MatchString(out) {
		t.Errorf("DATABYTES from the rule not advertised:\n%s", out)
	}
	out = swaks(t, addr, "--from", "s@sender.example", "--to", "x@example.com", "--body", strings.Repeat("0123456789\n", 600))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("over DATABYTES answered %q", r)
	}
	// 127.0.0.2 is denied: closed without a word.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(conn); len(b) != 0 {
		t.Errorf("denied client got %q", b)
	}
	conn.Close()
	if n := len(in.messages(t)); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
	log, _ := os.ReadFile(in.log)
	if !strings.Contains(string(log), "info deny ip=127.0.0.2 rule=1") || !strings.Contains(string(log), "rule=2 relay=true") {
		t.Errorf("log lacks the ACL decisions:\n%s", log)
	}
}

// TestSMTPDInjectorDies kills the injector half way through a message:
// the client must get a temporary failure and the queue must stay empty.
func TestSMTPDInjectorDies(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	script := filepath.Join(in.dir, "dying-queue")
	os.WriteFile(script, []byte("#!/bin/sh\nhead -c 2000 >/dev/null\nkill -9 $$\n"), 0o755)
	addr := in.standalone(t, []string{"QMAILQUEUE=" + script})
	out := swaks(t, addr, "--from", "s@sender.example", "--to", "u@example.com", "--body", strings.Repeat("0123456789\n", 2000))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "451 4.3.0") {
		t.Errorf("injector killed mid-message: %q\n%s", r, out)
	}
	// A refusing filter in QMAILQUEUE: its permanent code reaches the client.
	refuse := filepath.Join(in.dir, "refusing-queue")
	os.WriteFile(refuse, []byte("#!/bin/sh\ncat >/dev/null\nexit 31\n"), 0o755)
	addr2 := in.standalone(t, []string{"QMAILQUEUE=" + refuse})
	out = swaks(t, addr2, "--from", "s@sender.example", "--to", "u@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "554 5.3.0") {
		t.Errorf("injector exit 31: %q", r)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// TestSMTPDQueuedFastPath hands messages to gw-queued's socket and then
// kills gw-queued: accepted messages are in the queue, later ones get 451.
func TestSMTPDQueuedFastPath(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	sock := filepath.Join(in.dir, "inject.sock")
	qd := exec.Command(bin("gw-queued"), "--queue", in.queue, "--socket", sock)
	qd.Stderr = os.Stderr
	if err := qd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qd.Process.Kill(); qd.Wait() }()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	addr := in.standalone(t, []string{"GW_QUEUED=" + sock})
	for i := 0; i < 3; i++ {
		out := swaks(t, addr, "--from", "s@sender.example", "--to", fmt.Sprintf("u%d@example.com", i))
		if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
			t.Fatalf("message %d: %q\n%s", i, r, out)
		}
	}
	if n := len(in.messages(t)); n != 3 {
		t.Fatalf("%d messages queued, want 3", n)
	}
	qd.Process.Kill()
	qd.Wait()
	out := swaks(t, addr, "--from", "s@sender.example", "--to", "late@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "451 4.3.0") && !strings.HasPrefix(replyTo(out, "DATA"), "451 4.3.0") {
		t.Errorf("with gw-queued gone: DATA %q, end %q", replyTo(out, "DATA"), r)
	}
	if n := len(in.messages(t)); n != 3 {
		t.Errorf("%d messages queued, want 3", n)
	}
}

func TestSMTPDRecipientsAndBlocklists(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{
		"recipients/example.com": "# valid users\nbob\nCarol\n",
		"badmailfrom":            "@spam.example\n*@*.bulk.example\n",
		"badrcptto":              "trap@example.com\n",
	})
	addr := in.underTcpserver(t, "")
	replies := smtpdDialogue(t, addr, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\n"+
		"RCPT TO:<bob@example.com>\r\nRCPT TO:<carol@EXAMPLE.com>\r\nRCPT TO:<mallory@example.com>\r\n"+
		"RCPT TO:<trap@example.com>\r\nRCPT TO:<anyone@a.example.org>\r\nRSET\r\n"+
		"MAIL FROM:<x@spam.example>\r\nRCPT TO:<bob@example.com>\r\nRSET\r\n"+
		"MAIL FROM:<x@a.bulk.example>\r\nRCPT TO:<bob@example.com>\r\nQUIT\r\n")
	want := []string{"220", "250", "250 2.0.0", "250 2.0.0", "250 2.0.0", "550 5.1.1", "553 5.7.1", "250 2.0.0", "250 2.0.0",
		"250 2.0.0", "553 5.7.1", "250 2.0.0", "250 2.0.0", "553 5.7.1", "221 2.0.0"}
	if len(replies) != len(want) {
		t.Fatalf("replies %q", replies)
	}
	for i, w := range want {
		if !strings.HasPrefix(replies[i], w) {
			t.Errorf("reply %d = %q, want %s", i, replies[i], w)
		}
	}
}

// TestSMTPDStrictLineEndings sends the published smuggling variants: each
// must end the session with 451 and queue nothing; a stray CR before the
// final CRLF is delivered, not hung.
func TestSMTPDStrictLineEndings(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.underTcpserver(t, "")
	head := "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
	smuggled := "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nspoofed\r\n.\r\nQUIT\r\n"
	for _, end := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r"} {
		replies := smtpdDialogue(t, addr, head+"Subject: x\r\n\r\nbody"+end+smuggled)
		if got := strings.Join(replies, "|"); !regexp.MustCompile(`\|354 [^|]*\|451 4\.5\.2 bare LF or CR in message, see https://cr\.yp\.to/docs/smtplf\.html$`).MatchString(got) {
			t.Errorf("end %q: replies %q", end, replies)
		}
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued from smuggling attempts", n)
	}
	replies := smtpdDialogue(t, addr, head+"Subject: x\r\n\r\nstray\r\r\n.\r\nQUIT\r\n")
	if got := replies[len(replies)-2]; !strings.HasPrefix(got, "250 2.0.0") {
		t.Errorf("stray CR before the end: %q", replies)
	}
}

func TestSMTPDPythonSmtplib(t *testing.T) {
	need(t, "python3")
	in := newSMTPDInstance(t, map[string]string{"databytes": "100000\n"})
	addr := in.underTcpserver(t, "")
	host, port, _ := net.SplitHostPort(addr)
	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.example")
code, msg = s.ehlo()
assert code == 250 and b"SIZE 100000" in msg and b"PIPELINING" in msg, msg
s.mail("s@sender.example")
print(s.rcpt("u@example.com")[0], s.rcpt("u@relay.example")[0], s.rcpt("Postmaster")[0])
code, msg = s.data(b"Subject: py\r\n\r\nhello\r\n")
print(code, msg.decode()[:5])
try:
    s.sendmail("s@sender.example", ["u@example.com"], b"x" * 200000)
except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
    print(e.smtp_code)
s.quit()
`
	out, err := exec.Command("python3", "-c", script, host, port).CombinedOutput()
	if err != nil || string(out) != "250 553 250\n250 2.0.0\n552\n" {
		t.Errorf("smtplib: %v\n%s", err, out)
	}
}

// TestSMTPDManPageOptions keeps gw-smtpd.8 and the program together: every
// flag is in the page's OPTIONS, and every option there is a flag.
func TestSMTPDManPageOptions(t *testing.T) {
	page, err := os.ReadFile("../man/gw-smtpd.8")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\.It Fl -([a-z-]+)`).FindAllSubmatch(page, -1) {
		documented[string(m[1])] = true
	}
	out, _ := exec.Command(bin("gw-smtpd"), "--help").CombinedOutput()
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z][a-z-]*)`).FindAllStringSubmatch(string(out), -1) {
		if m[1] != "help" && m[1] != "version" {
			have[m[1]] = true
		}
	}
	if len(have) == 0 {
		t.Fatalf("no flags in gw-smtpd --help:\n%s", out)
	}
	for f := range have {
		if !documented[f] {
			t.Errorf("--%s is not in gw-smtpd.8 OPTIONS", f)
		}
	}
	for f := range documented {
		if !have[f] {
			t.Errorf("gw-smtpd.8 documents --%s, which the program lacks", f)
		}
	}
}

// TestSMTPDListenerKeepsMonitorAwake: a listening gw-smtpd has started
// itself again, in the process its supervisor started, with the Go
// runtime's monitor kept from its deep sleep (lib/runtimetune), and serves as
// before; a schedtrace the sysadmin set in GODEBUG is kept as given.
func TestSMTPDListenerKeepsMonitorAwake(t *testing.T) {
	godebug := func(in *smtpdInstance) string {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", in.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
				return v
			}
		}
		return ""
	}

	in := newSMTPDInstance(t, nil)
	addr := in.standalone(t, []string{"GODEBUG=madvdontneed=1"})
	if got, want := godebug(in), "madvdontneed=1,"+runtimetune.Setting; got != want {
		t.Errorf("the listener runs with GODEBUG=%q, want %q", got, want)
	}
	out := swaks(t, addr, "--from", "s@sender.example", "--to", "bob@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("message after the second start answered %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}

	own := newSMTPDInstance(t, nil)
	addr = own.standalone(t, []string{"GODEBUG=schedtrace=0"})
	if got := godebug(own); got != "schedtrace=0" {
		t.Errorf("the sysadmin's GODEBUG=schedtrace=0 became %q", got)
	}
	if r := replyTo(swaks(t, addr, "--from", "s@sender.example", "--to", "bob@example.com"), "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("message answered %q", r)
	}
}
