package tests

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialReader connects to addr with a deadline far beyond what the test
// needs, so a hang fails the test instead of blocking it.
func dialReader(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// smtpReply reads one whole (possibly multi-line) reply and returns its
// last line.
func smtpReply(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a reply: %v (so far %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

// exited waits for the program to end after its signal and returns its
// wait error.
func exited(t *testing.T, in *smtpdInstance) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(25 * time.Second): // below the 30 s grace: idle sessions must not hold it
		t.Fatalf("the program did not exit after SIGTERM")
		return nil
	}
}

// TestSMTPDShutdownEndsIdleSessions: on SIGTERM gw-smtpd tells a session
// that waits between transactions "421 4.3.2" at once, and lets one in
// the middle of DATA finish its message (250) before it says the same.
func TestSMTPDShutdownEndsIdleSessions(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.standalone(t, nil)

	idle, idleR := dialReader(t, addr)
	smtpReply(t, idleR)
	io.WriteString(idle, "EHLO idle.example\r\n")
	if r := smtpReply(t, idleR); !strings.HasPrefix(r, "250") {
		t.Fatalf("EHLO: %q", r)
	}

	busy, busyR := dialReader(t, addr)
	smtpReply(t, busyR)
	for _, cmd := range []string{"EHLO busy.example", "MAIL FROM:<s@sender.example>", "RCPT TO:<u@example.com>", "DATA"} {
		io.WriteString(busy, cmd+"\r\n")
		if r := smtpReply(t, busyR); !strings.HasPrefix(r, "250") && !strings.HasPrefix(r, "354") {
			t.Fatalf("%s: %q", cmd, r)
		}
	}
	io.WriteString(busy, "Subject: in flight at shutdown\r\n\r\nfirst half\r\n")

	in.cmd.Process.Signal(syscall.SIGTERM)
	if r := smtpReply(t, idleR); !strings.HasPrefix(r, "421 4.3.2") {
		t.Errorf("idle session at shutdown: %q, want 421 4.3.2", r)
	}
	if b, err := io.ReadAll(idleR); err != nil || len(b) != 0 {
		t.Errorf("idle session not closed after its 421: %q %v", b, err)
	}

	io.WriteString(busy, "second half\r\n.\r\n")
	if r := smtpReply(t, busyR); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("message finished during shutdown: %q, want 250 2.0.0", r)
	}
	if r := smtpReply(t, busyR); !strings.HasPrefix(r, "421 4.3.2") {
		t.Errorf("after its message, the busy session got %q, want 421 4.3.2", r)
	}
	if err := exited(t, in); err != nil {
		t.Errorf("gw-smtpd after SIGTERM: %v", err)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || !strings.Contains(in.body(t, msgs[0]), "second half") {
		t.Errorf("queue holds %d messages, want the one finished during shutdown", len(msgs))
	}
	log, _ := os.ReadFile(in.log)
	if strings.Count(string(log), "reason=shutdown") != 2 || strings.Contains(string(log), "sessions_left") {
		t.Errorf("log: want two sessions ended by the shutdown and none left over:\n%s", log)
	}
}

// TestQMTPDShutdownEndsIdleSessions: on SIGTERM gw-qmtpd closes a
// connection kept open between packages (gw-send reuses them) at once,
// and answers a package that was arriving before it closes that one.
func TestQMTPDShutdownEndsIdleSessions(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.qmtpdStandalone(t, nil)

	idle, idleR := dialReader(t, addr)
	io.WriteString(idle, qmtpPackage("Subject: before\n\nx\n", "s@sender.example", "u@example.com"))
	if r, err := idleR.ReadString(','); err != nil || !strings.Contains(r, ":K") {
		t.Fatalf("first package: %q %v", r, err)
	}

	// The busy connection's session must be under way (accepted) before
	// the signal: a first package answered shows it is.
	busy, busyR := dialReader(t, addr)
	io.WriteString(busy, qmtpPackage("Subject: busy's first\n\nx\n", "s@sender.example", "u@example.com"))
	if r, err := busyR.ReadString(','); err != nil || !strings.Contains(r, ":K") {
		t.Fatalf("busy connection's first package: %q %v", r, err)
	}
	pkg := qmtpPackage("Subject: in flight at shutdown\n\nbody\n", "s@sender.example", "u@example.com")
	half := len(pkg) / 2
	io.WriteString(busy, pkg[:half])

	in.cmd.Process.Signal(syscall.SIGTERM)
	if b, err := io.ReadAll(idleR); err != nil || len(b) != 0 {
		t.Errorf("idle QMTP connection at shutdown: got %q %v, want it closed", b, err)
	}
	io.WriteString(busy, pkg[half:])
	if r, err := busyR.ReadString(','); err != nil || !strings.Contains(r, ":K") {
		t.Errorf("package finished during shutdown: %q %v, want K", r, err)
	}
	if b, err := io.ReadAll(busyR); err != nil || len(b) != 0 {
		t.Errorf("busy QMTP connection after its answer: got %q %v, want it closed", b, err)
	}
	if err := exited(t, in); err != nil {
		t.Errorf("gw-qmtpd after SIGTERM: %v", err)
	}
	if n := len(in.messages(t)); n != 3 {
		t.Errorf("queue holds %d messages, want 3", n)
	}
}
