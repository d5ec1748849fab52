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

// TestSMTPDCallout puts a gateway gw-smtpd in front of an internal
// gw-smtpd that knows its users (control/recipients): the gateway's
// callouts get 250 for bob and 550 5.1.1 for a stranger, answer the same
// question again from its cache without asking, and once the internal
// host is gone answer 450 4.1.1 for what it has not cached — never 550.
// The cache works standalone (kept open) and under tcpserver (opened per
// transaction).
func TestSMTPDCallout(t *testing.T) {
	for _, mode := range []string{"standalone", "tcpserver"} {
		t.Run(mode, func(t *testing.T) {
			internal := newSMTPDInstance(t, map[string]string{"recipients/example.com": "bob\n"})
			iaddr := internal.standalone(t, nil)
			gw := newSMTPDInstance(t, map[string]string{
				"callouts":   "example.com:\n.example.org:" + iaddr + "\n",
				"smtproutes": "example.com:" + iaddr + "\n",
			})
			cache := filepath.Join(gw.dir, "state", "callout.db")
			os.MkdirAll(filepath.Dir(cache), 0o755)
			var addr string
			if mode == "standalone" {
				addr = gw.standalone(t, nil, "--callout-cache", cache)
			} else {
				addr = gw.underTcpserver(t, "", "--callout-cache", cache)
			}
			rcpts := func(to ...string) []string {
				script := "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\n"
				for _, r := range to {
					script += "RCPT TO:<" + r + ">\r\n"
				}
				replies := smtpdDialogue(t, addr, script+"QUIT\r\n")
				if len(replies) != 3+len(to)+1 {
					t.Fatalf("replies %q", replies)
				}
				return replies[3 : 3+len(to)]
			}
			expect := func(got []string, want ...string) {
				t.Helper()
				for i, w := range want {
					if !strings.HasPrefix(got[i], w+" ") {
						t.Errorf("RCPT %d answered %q, want %s", i, got[i], w)
					}
				}
			}
			probes := func() int {
				log, _ := os.ReadFile(internal.log)
				return strings.Count(string(log), "info mail ")
			}
			expect(rcpts("bob@example.com", "ghost@example.com", "postmaster@example.com", "x@a.example.org"),
				"250 2.0.0", "550 5.1.1", "250 2.0.0", "250 2.0.0") // the internal host has no list for a.example.org
			if n := probes(); n != 3 {
				t.Errorf("%d callouts reached the internal host, want 3 (postmaster is never asked)", n)
			}
			expect(rcpts("bob@example.com", "ghost@example.com"), "250 2.0.0", "550 5.1.1")
			if n := probes(); n != 3 {
				t.Errorf("cached answers asked again: %d callouts, want 3", n)
			}
			// The internal host goes away: cached answers stand, new
			// questions are temporary failures.
			internal.stop(t)
			expect(rcpts("bob@example.com", "carol@example.com", "ghost@example.com"), "250 2.0.0", "450 4.1.1", "550 5.1.1")
			log, _ := os.ReadFile(gw.log)
			for _, want := range []string{"info callout sid=", "result=exists", "result=unknown", "warning callout sid=", "result=unverified", "detail=cached"} {
				if !strings.Contains(string(log), want) {
					t.Errorf("gateway log lacks %q:\n%s", want, log)
				}
			}
			if n := len(gw.messages(t)); n != 0 {
				t.Errorf("%d messages queued by callouts", n)
			}
		})
	}
}

// TestSMTPDCalloutTimeout: an internal host that accepts the connection
// and says nothing costs the client callouttimeout, then 450.
func TestSMTPDCalloutTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	gw := newSMTPDInstance(t, map[string]string{"callouts": "example.com:" + ln.Addr().String() + "\n", "callouttimeout": "2\n"})
	addr := gw.standalone(t, nil)
	start := time.Now()
	replies := smtpdDialogue(t, addr, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<bob@example.com>\r\nQUIT\r\n")
	took := time.Since(start)
	if len(replies) < 4 || !strings.HasPrefix(replies[3], "450 4.1.1 ") {
		t.Errorf("silent internal host: %q", replies)
	}
	if took < 2*time.Second || took > 6*time.Second {
		t.Errorf("RCPT took %v, want about callouttimeout (2 s)", took)
	}
}

// stop kills the instance's gw-smtpd started by standalone.
func (in *smtpdInstance) stop(t *testing.T) {
	t.Helper()
	if in.cmd == nil {
		t.Fatal("stop: no process")
	}
	in.cmd.Process.Kill()
	in.cmd.Wait()
}

// TestSMTPDReloadOnHUP: a standalone gw-smtpd reads its control files
// again on SIGHUP; a control file it cannot read keeps the old policy.
func TestSMTPDReloadOnHUP(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.standalone(t, nil)
	rcpt := func() string {
		r := smtpdDialogue(t, addr, "HELO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@new.example>\r\nQUIT\r\n")
		if len(r) < 4 {
			t.Fatalf("replies %q", r)
		}
		return r[3]
	}
	if r := rcpt(); !strings.HasPrefix(r, "553 5.7.1 ") {
		t.Fatalf("before the reload: %q", r)
	}
	os.WriteFile(filepath.Join(in.control, "rcpthosts"), []byte("example.com\nnew.example\n"), 0o644)
	hup := func() {
		in.cmd.Process.Signal(syscall.SIGHUP)
		for i := 0; i < 100; i++ {
			log, _ := os.ReadFile(in.log)
			if strings.Count(string(log), " reload ") > strings.Count(string(in.seen), " reload ") {
				in.seen = log
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no reload logged")
	}
	hup()
	if r := rcpt(); !strings.HasPrefix(r, "250 2.0.0 ") {
		t.Errorf("after the reload: %q", r)
	}
	// An unreadable control file: the reload fails, the policy stays.
	os.Remove(filepath.Join(in.control, "me"))
	os.WriteFile(filepath.Join(in.control, "rcpthosts"), []byte("example.com\n"), 0o644)
	hup()
	if r := rcpt(); !strings.HasPrefix(r, "250 2.0.0 ") {
		t.Errorf("after a failed reload: %q", r)
	}
	if log, _ := os.ReadFile(in.log); !strings.Contains(string(log), "warning reload result=failed") {
		t.Errorf("failed reload not logged:\n%s", log)
	}
}

// TestSMTPDPregreet: a client that talks before the greeting gets 554 and
// the connection closes, before and during greetdelay.
func TestSMTPDPregreet(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"greetdelay": "1\n"})
	addr := in.standalone(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "EHLO spam.example\r\nMAIL FROM:<s@sender.example>\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "554 5.5.0 ") {
		t.Errorf("pipelining before the greeting: %q", line)
	}
	if rest, err := br.ReadString('\n'); err == nil {
		t.Errorf("after the 554: %q, want the connection closed", rest)
	}
	// swaks waits for the greeting, and is served after greetdelay.
	out := swaks(t, addr, "--from", "s@sender.example", "--to", "bob@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("a patient client: %q\n%s", r, out)
	}
	if log, _ := os.ReadFile(in.log); !strings.Contains(string(log), "info pregreet sid=") {
		t.Errorf("pregreet not logged:\n%s", log)
	}
}

// TestSMTPDIPv6: standalone on [::1], the client's address in the log and
// in the Received line.
func TestSMTPDIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	in := newSMTPDInstance(t, nil)
	cmd := exec.Command(bin("gw-smtpd"), "--control-dir", in.control, "--listen", addr, "--listen", "127.0.0.1:0")
	cmd.Env = in.env()
	in.start(t, cmd)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// swaks needs IO::Socket::INET6 for IPv6, Debian's swaks does not
	// pull it in: a raw dialogue instead.
	replies := smtpdDialogue(t, addr, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<bob@example.com>\r\n"+
		"DATA\r\nSubject: v6\r\n\r\nhi\r\n.\r\nQUIT\r\n")
	if len(replies) != 7 || !strings.HasPrefix(replies[5], "250 2.0.0") {
		t.Fatalf("over IPv6: %q", replies)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || !strings.Contains(in.body(t, msgs[0]), " (::1)\n  by gw.example.net ") {
		t.Errorf("Received line lacks the IPv6 client:\n%s", in.body(t, msgs[0]))
	}
	if log, _ := os.ReadFile(in.log); !strings.Contains(string(log), "info connect sid=") || !strings.Contains(string(log), " ip=::1 ") {
		t.Errorf("log lacks ip=::1:\n%s", log)
	}
}

// TestSMTPDAuthFailuresAcrossSessions: standalone, AUTH failures count by
// address across connections; at maxauthfail the address is refused AUTH
// with 421 before its password is even checked.
func TestSMTPDAuthFailuresAcrossSessions(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"maxauthfail": "2\n"})
	writeCert(t, filepath.Join(in.control, "servercert.pem"))
	cp := filepath.Join(in.dir, "checkpassword")
	os.WriteFile(cp, []byte(checkpasswordScript), 0o755)
	addr := in.standalone(t, nil, "--checkpassword", cp)
	try := func(pass string) string {
		return swaks(t, addr, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", pass,
			"--from", "alice@example.com", "--to", "friend@elsewhere.example")
	}
	for i := 0; i < 2; i++ {
		if out := try("wrong"); !strings.Contains(out, "535 5.7.8") {
			t.Fatalf("failure %d:\n%s", i+1, out)
		}
	}
	if out := try("s3cret pass"); !strings.Contains(out, "421 4.7.0 too many authentication failures from your address") {
		t.Errorf("third session, right password, after two failures:\n%s", out)
	}
	log, _ := os.ReadFile(in.log)
	if !strings.Contains(string(log), "result=blocked reason=maxauthfail") {
		t.Errorf("log lacks the blocked AUTH:\n%s", log)
	}
}
