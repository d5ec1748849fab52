package tests

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smtpClient is one raw connection to a listener, for dialogues that
// must control every byte and its timing.
type smtpClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &smtpClient{t: t, c: c, br: bufio.NewReader(c)}
	s.expect("220 ")
	return s
}

// send writes text as it is (pipelined when it holds several commands).
func (s *smtpClient) send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.c, text); err != nil {
		s.t.Fatalf("sending %q: %v", text, err)
	}
}

// reply reads one reply and returns its last line.
func (s *smtpClient) reply() string {
	s.t.Helper()
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading a reply: %v (got %q)", err, l)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// expect reads one reply and checks how it begins.
func (s *smtpClient) expect(prefix string) string {
	s.t.Helper()
	r := s.reply()
	if !strings.HasPrefix(r, prefix) {
		s.t.Fatalf("got %q, want %q…", r, prefix)
	}
	return r
}

// closed checks that the server closed the connection, within d. A
// reset counts: a server that closes with the client's bytes unread
// makes the kernel answer them with RST.
func (s *smtpClient) closed(d time.Duration) {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(s.br)
	if errors.Is(err, syscall.ECONNRESET) {
		err = nil
	}
	if err != nil || len(rest) > 0 {
		s.t.Fatalf("after the last reply: %q, %v; want the connection closed", rest, err)
	}
}

// trickle sends text one byte every gap until the server closes the
// connection, and returns how long it kept it open and what it said.
func (s *smtpClient) trickle(text string, gap time.Duration) (time.Duration, string) {
	start := time.Now()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(s.br)
		got <- string(b)
	}()
	for i := 0; i < len(text); i++ {
		if _, err := s.c.Write([]byte{text[i]}); err != nil {
			break
		}
		select {
		case out := <-got:
			return time.Since(start), out
		case <-time.After(gap):
		}
	}
	return time.Since(start), <-got
}

// TestSMTPDSlowloris: the whole command line must come within
// timeoutsmtpd, and a message at the minimum data rate: a client
// trickling a byte every half second is cut off at the timeout, though
// each byte came long before it.
func TestSMTPDSlowloris(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"timeoutsmtpd": "2\n"})
	addr := in.standalone(t, nil)

	c := dialSMTP(t, addr)
	took, said := c.trickle("EHLO a-slow-client-that-sends-a-byte-at-a-time.example\r\n", 500*time.Millisecond)
	if said != "451 4.4.2 timeout, closing connection\r\n" || took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("trickled command: closed after %v with %q, want the timeout after 2s", took, said)
	}

	c = dialSMTP(t, addr)
	c.send("EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	took, said = c.trickle("Subject: slow\r\n\r\n"+strings.Repeat("x", 100)+"\r\n.\r\n", 500*time.Millisecond)
	if said != "451 4.4.2 timeout, closing connection\r\n" || took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("trickled DATA: closed after %v with %q, want the timeout after about 2s", took, said)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
	in.waitLog(t, "reason=timeout")
}

// waitLog waits until the listener's log holds text.
func (in *smtpdInstance) waitLog(t *testing.T, text string) string {
	t.Helper()
	var log []byte
	waitFor(t, "the log to say "+text, 5*time.Second, func() bool {
		log, _ = os.ReadFile(in.log)
		return bytes.Contains(log, []byte(text))
	})
	return string(log)
}

// TestSMTPDJunkAndLineLimits: Postfix's junk command limit (the 101st
// NOOP without mail ends the session) and a line that never ends (a MiB
// without LF ends the session at once).
func TestSMTPDJunkAndLineLimits(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.standalone(t, nil)

	c := dialSMTP(t, addr)
	c.send(strings.Repeat("NOOP\r\n", 101))
	for i := 0; i < 100; i++ {
		c.expect("250 2.0.0 ")
	}
	c.expect("421 4.7.0 too many commands without mail")
	c.closed(2 * time.Second)

	c = dialSMTP(t, addr)
	go c.c.Write(bytes.Repeat([]byte("A"), 1<<20)) // and the client keeps the connection open
	c.expect("421 4.7.0 line too long, closing connection")
	c.closed(2 * time.Second)

	log := in.waitLog(t, "reason=line_limit")
	for _, want := range []string{"refused sid=", "cmd=NOOP code=421 reason=junk_limit", "reason=too_many_junk"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
}

// TestSMTPDChunking: BDAT (RFC 3030) in three chunks, one of which holds
// "\r\n.\r\n" and a MAIL command, is one message, stored byte for byte;
// a refused BDAT's bytes are read and dropped, never taken as commands.
func TestSMTPDChunking(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.standalone(t, nil)
	c := dialSMTP(t, addr)
	c.send("EHLO c.example\r\n")
	if r := c.reply(); r != "250 SIZE" {
		t.Fatalf("EHLO: %q", r)
	}

	// Refused: no transaction yet. The chunk is a whole transaction.
	smuggled := "MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n"
	c.send("BDAT " + strconv.Itoa(len(smuggled)) + "\r\n" + smuggled + "NOOP\r\n")
	c.expect("503 5.5.1 send MAIL first")
	c.expect("250 2.0.0 ")

	chunks := []string{"Subject: in chunks\r\n\r\nfirst line\r\n", ".\r\n\r\n.\r\nMAIL FROM:<a@b.example>\r\n", "..two dots\r\nlast line\r\n"}
	c.send("MAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\n")
	c.expect("250 ")
	c.expect("250 ")
	for i, ch := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		c.send("BDAT " + strconv.Itoa(len(ch)) + last + "\r\n" + ch)
		if i < len(chunks)-1 {
			c.expect("250 2.0.0 " + strconv.Itoa(len(ch)) + " octets received")
		}
	}
	c.expect("250 2.0.0 ok ")
	c.send("QUIT\r\n")
	c.expect("221 ")

	msgs := in.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	body := in.body(t, msgs[0])
	want := strings.ReplaceAll(strings.Join(chunks, ""), "\r\n", "\n")
	if _, after, ok := strings.Cut(body, "\nSubject:"); !ok || "Subject:"+after != want {
		t.Errorf("stored:\n%q\nwant after the Received line:\n%q", body, want)
	}
	log, _ := os.ReadFile(in.log)
	if bytes.Contains(log, []byte("smuggler")) || !bytes.Contains(log, []byte("cmd=BDAT code=503 reason=out_of_sequence")) {
		t.Errorf("log:\n%s", log)
	}
}

// TestSMTPDSMTPUTF8ToPostfix: internationalized mail (RFC 6531) from
// Python's smtplib is accepted, queued as written, and gw-send hands it
// to a real Postfix with smtputf8_enable=yes, which delivers it.
func TestSMTPDSMTPUTF8ToPostfix(t *testing.T) {
	mail := filepath.Join(workDir(t), "mail")
	os.MkdirAll(mail, 0o755)
	os.Chmod(filepath.Dir(mail), 0o755)
	if err := os.Chown(mail, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	pf := startInsidePostfix(t,
		"smtputf8_enable = yes",
		"relay_domains =",
		"transport_maps =",
		"virtual_mailbox_domains = gw.test",
		"virtual_mailbox_base = "+mail,
		"virtual_mailbox_maps = static:box/",
		"virtual_uid_maps = static:65534",
		"virtual_gid_maps = static:65534",
	)
	d := dnsFor(t)
	snd := newSendInstance(t, map[string]string{"smtproutes": "gw.test:" + strings.Replace(pf.addr, "127.0.0.1:", "[127.0.0.1]:", 1), "dnsserver": d.Addr})
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "gw.test\n"})
	addr := in.standalone(t, []string{"GW_QUEUE=" + snd.queue})

	// Without SMTPUTF8 a UTF-8 address is refused, as before.
	r := smtpdDialogue(t, addr, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<j\xc3\xbcrgen@gw.test>\r\nQUIT\r\n")
	if len(r) < 4 || !strings.HasPrefix(r[3], "553 5.6.7") {
		t.Errorf("UTF-8 without SMTPUTF8: %q", r)
	}

	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.ehlo("client.example")
if not s.has_extn("smtputf8"):
    sys.exit("no SMTPUTF8 offered")
msg = "From: Jürgen <jürgen@sender.example>\r\nTo: 用户@gw.test\r\nSubject: grüße\r\n\r\nprüfung\r\n".encode("utf-8")
print(s.sendmail("jürgen@sender.example", ["用户@gw.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]))
s.quit()
`
	h, p, _ := net.SplitHostPort(addr)
	out, err := exec.Command("python3", "-c", script, h, p).CombinedOutput()
	if err != nil {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	msgs := snapshot(t, snd.queue).Messages
	if len(msgs) != 1 || msgs[0].Sender != "jürgen@sender.example" || msgs[0].Recipients[0].Address != "用户@gw.test" {
		t.Fatalf("queued %+v", msgs)
	}
	snd.start(t)
	waitFor(t, "Postfix to deliver the message", 30*time.Second, func() bool {
		return strings.Contains(pf.maillog(), "status=sent (delivered to maildir)")
	})
	log := pf.maillog()
	if !strings.Contains(log, "from=<jürgen@sender.example>") || !strings.Contains(log, "to=<用户@gw.test>") {
		t.Errorf("Postfix's log:\n%s", log)
	}
	got, _ := filepath.Glob(filepath.Join(mail, "box", "new", "*"))
	if len(got) != 1 {
		t.Fatalf("%d messages in the mailbox", len(got))
	}
	b, _ := os.ReadFile(got[0])
	if !strings.Contains(string(b), "\nSubject: grüße\n") || !strings.HasSuffix(string(b), "\n\nprüfung\n") || !strings.Contains(string(b), "with UTF8SMTP id ") {
		t.Errorf("delivered:\n%s", b)
	}
}

// TestScanProxyOnTheCore: gw-scan's proxy runs the same core as
// gw-smtpd: BDAT chunks, one holding "\r\n.\r\n", are one message relayed
// to the next hop, and a bare LF in DATA gets gw-smtpd's 451 4.5.2 and
// the end of the session.
func TestScanProxyOnTheCore(t *testing.T) {
	next := startSMTPSink(t, filepath.Join(workDir(t), "next"))
	addr, _, _ := scanProxy(t, next.addr, map[string]string{})
	c := dialSMTP(t, addr)
	c.send("EHLO client.test\r\n")
	c.expect("250 SIZE")
	one, two := "Subject: chunked through the proxy\r\n\r\nfirst\r\n.\r\n", "after the dot\r\n"
	c.send("MAIL FROM:<s@gw.test>\r\nRCPT TO:<u@gw.test>\r\nBDAT " + strconv.Itoa(len(one)) + "\r\n" + one +
		"BDAT " + strconv.Itoa(len(two)) + " LAST\r\n" + two)
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 " + strconv.Itoa(len(one)) + " octets received")
	c.expect("250 ")
	waitFor(t, "the next hop to take the message", 20*time.Second, func() bool { return len(next.transactions()) == 1 })
	if tx := next.transactions()[0]; !strings.Contains(tx, "\nfirst\n.\nafter the dot\n") {
		t.Errorf("the next hop got:\n%s", tx)
	}

	c.send("MAIL FROM:<s@gw.test>\r\nRCPT TO:<u@gw.test>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.send("Subject: bare\r\n\r\nline\n.\nQUIT\r\n")
	c.expect("451 4.5.2 ")
	c.closed(2 * time.Second)
	if n := len(next.transactions()); n != 1 {
		t.Errorf("the next hop has %d transactions, want the first alone", n)
	}
}
