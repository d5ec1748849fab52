package tests

import (
	"bufio"
	"net"
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
