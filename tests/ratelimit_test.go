package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// compileRules writes rules to a gw-tcprules database in the instance.
func (in *smtpdInstance) compileRules(t *testing.T, name, rules string) string {
	t.Helper()
	db := filepath.Join(in.dir, name)
	compile := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	compile.Stdin = strings.NewReader(rules)
	if out, err := compile.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	return db
}

// greeting dials addr and returns the server's first line.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(l, "\r\n")
}

// TestSMTPDRateLimits: a client's rule sets its limits; recipients over
// the limit get 451 4.7.0 saying when the window resets, connections
// over it 421, and a client refused twice is banned (RATE_BAN).
func TestSMTPDRateLimits(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	db := in.compileRules(t, "tcp.smtp.db", `:allow,RATE_RCPT="2/60s",RATE_CONN="4/60s",RATE_BAN="2/1h"`+"\n")
	addr := in.standalone(t, nil, "--acl", db)

	// Connection 1 was the harness's probe that the listener is up.
	c := dialSMTP(t, addr) // connection 2
	c.send("EHLO client.example\r\n")
	c.expect("250 ")
	c.send("MAIL FROM:<a@sender.example>\r\n")
	c.expect("250 ")
	for _, to := range []string{"bob", "carol"} {
		c.send("RCPT TO:<" + to + "@example.com>\r\n")
		c.expect("250 ")
	}
	c.send("RCPT TO:<dave@example.com>\r\n")
	r := c.expect("451 4.7.0 too many recipients from ip:127.0.0.1 (limit 2 per 1m0s), try again in ")
	c.send("QUIT\r\n")
	c.expect("221 ")
	in.waitLog(t, "result=refused")
	if !strings.HasSuffix(r, " seconds") {
		t.Errorf("no reset time in %q", r)
	}

	for i, want := range []string{
		"220 ", // 3
		"220 ", // 4
		"421 4.7.0 too many connections from ip:127.0.0.1 (limit 4 per 1m0s)", // 5: the second refusal bans
		"421 4.7.0 ip:127.0.0.1 is banned for repeated excess, until ",
	} {
		if g := greeting(t, addr); !strings.HasPrefix(g, want) {
			t.Fatalf("connection %d: %q, want %q", i+3, g, want)
		}
	}
	in.waitLog(t, "result=banned")
}

// TestQMTPDMessageLimit: gw-qmtpd answers a package over the client's
// RATE_MSG with Z and the time the window resets.
func TestQMTPDMessageLimit(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	db := in.compileRules(t, "tcp.qmtp.db", `:allow,RATE_MSG="1/60s"`+"\n")
	addr := in.qmtpdStandalone(t, nil, "--acl", db)
	pkg := qmtpPackage("Subject: hi\n\nhello\n", "a@example.org", "b@example.net")
	if got := qmtpFrom(t, addr, "127.0.0.1", pkg); !strings.HasPrefix(got, "K") {
		t.Fatalf("first message: %q", got)
	}
	got := qmtpFrom(t, addr, "127.0.0.1", pkg)
	if !strings.HasPrefix(got, "Z4.7.0 too many messages from ip:127.0.0.1") || !strings.Contains(got, "try again in") {
		t.Fatalf("second message: %q", got)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// TestSMTPDRatesUnderTcpserver: under tcpserver each connection is a new
// gw-smtpd, so a client's counts add up only in the host's file
// (--rates). A rule of tcprules allows three messages a minute: each
// connection sends one, the fourth is refused 451 4.7.0; the messages
// accepted are on the queue, the refused one is not.
func TestSMTPDRatesUnderTcpserver(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	rates := filepath.Join(in.dir, "state", "rates.db")
	os.MkdirAll(filepath.Dir(rates), 0o755)
	addr := in.underTcpserver(t, `127.:allow,RATE_MSG="3/60s"`+"\n", "--rates", rates)

	send := func(i int) string {
		c := dialSMTP(t, addr)
		c.send("EHLO client.example\r\n")
		c.expect("250 ")
		c.send("MAIL FROM:<a@sender.example>\r\n")
		r := c.reply()
		if strings.HasPrefix(r, "250 ") {
			c.send("RCPT TO:<bob@example.com>\r\n")
			c.expect("250 ")
			c.send("DATA\r\n")
			c.expect("354 ")
			c.send(fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n.\r\n", i, i))
			c.expect("250 ")
		}
		c.send("QUIT\r\n")
		c.expect("221 ")
		return r
	}
	for i := 1; i <= 3; i++ {
		if r := send(i); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("message %d over its own connection: MAIL answered %q", i, r)
		}
	}
	r := send(4)
	if !strings.HasPrefix(r, "451 4.7.0 too many messages from ip:127.0.0.1 (limit 3 per 1m0s), try again in ") {
		t.Fatalf("message 4: MAIL answered %q, want 451 4.7.0", r)
	}
	in.waitLog(t, "result=refused")
	if n := len(in.messages(t)); n != 3 {
		t.Errorf("%d messages queued, want the 3 accepted", n)
	}
}

// TestSMTPDConnLimitUnderTcpserver: RATE_CONN of the client's rule under
// tcpserver: the connection over the limit is greeted 421 4.7.0.
func TestSMTPDConnLimitUnderTcpserver(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	rates := filepath.Join(in.dir, "state", "rates.db")
	os.MkdirAll(filepath.Dir(rates), 0o755)
	addr := in.underTcpserver(t, `127.:allow,RATE_CONN="2/60s"`+"\n", "--rates", rates)
	for i, want := range []string{
		"220 ",
		"220 ",
		"421 4.7.0 too many connections from ip:127.0.0.1 (limit 2 per 1m0s)",
	} {
		if g := greeting(t, addr); !strings.HasPrefix(g, want) {
			t.Fatalf("connection %d: greeted %q, want %q", i+1, g, want)
		}
	}
	in.waitLog(t, "result=refused")
}

// TestQMTPDRatesUnderTcpserver: gw-qmtpd under tcpserver with --rates, a
// rule allowing two messages a minute: the third package, over its own
// connection, is answered Z4.7.0 and not queued.
func TestQMTPDRatesUnderTcpserver(t *testing.T) {
	need(t, "tcpserver")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	rates := filepath.Join(in.dir, "state", "rates.db")
	os.MkdirAll(filepath.Dir(rates), 0o755)
	cdb := in.tcprulesCDB(t, "tcp.qmtp.cdb", `127.:allow,RATE_MSG="2/60s"`+"\n")
	cmd := exec.Command("tcpserver", "-1", "-R", "-H", "-l", "gw.example.net", "-x", cdb, "127.0.0.1", "0",
		bin("gw-qmtpd"), "--control-dir", in.control, "--rates", rates)
	cmd.Env = in.env()
	out, _ := cmd.StdoutPipe()
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(port)
	pkg := qmtpPackage("Subject: hi\n\nhello\n", "a@example.org", "b@example.net")
	for i := 1; i <= 2; i++ {
		if got := qmtpFrom(t, addr, "127.0.0.1", pkg); !strings.HasPrefix(got, "K") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	if got := qmtpFrom(t, addr, "127.0.0.1", pkg); !strings.HasPrefix(got, "Z4.7.0 too many messages from ip:127.0.0.1") {
		t.Fatalf("message 3: %q, want Z4.7.0", got)
	}
	if n := len(in.messages(t)); n != 2 {
		t.Errorf("%d messages queued, want 2", n)
	}
}

// tcprulesCDB compiles rules with ucspi-tcp's tcprules for tcpserver -x.
func (in *smtpdInstance) tcprulesCDB(t *testing.T, name, rules string) string {
	t.Helper()
	need(t, "tcprules")
	cdb := filepath.Join(in.dir, name)
	c := exec.Command("tcprules", cdb, cdb+".tmp")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("tcprules: %v\n%s", err, out)
	}
	return cdb
}
