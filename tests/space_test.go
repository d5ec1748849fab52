package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/qmtp"
)

// queueFree returns the bytes free for an unprivileged writer on the
// filesystem of dir.
func queueFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// setDatabytes writes control/databytes of in.
func setDatabytes(t *testing.T, in *smtpdInstance, n int64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(in.control, "databytes"), []byte(fmt.Sprintln(n)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSMTPDFreeSpaceAtMail: databytes is as large as the free space on
// the queue's filesystem, so one and a half times it does not fit.
// gw-smtpd, handing messages to gw-queued's socket, refuses at MAIL with
// 452 4.3.1, before any data; with databytes a quarter of the free space
// the same message is taken.
func TestSMTPDFreeSpaceAtMail(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	sock := filepath.Join(in.queue, "lock", "inject.sock")
	startQueued(t, in.queue, sock)
	free := queueFree(t, in.queue)
	setDatabytes(t, in, free)
	addr := in.standalone(t, []string{"GW_QUEUED=" + sock})
	got := smtpdDialogue(t, addr, "EHLO client.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nQUIT\r\n")
	if len(got) < 3 || !strings.HasPrefix(got[2], "452 4.3.1 ") {
		t.Fatalf("MAIL with databytes %d and %d bytes free: replies %q, want 452 4.3.1", free, free, got)
	}
	if len(got) < 4 || !strings.HasPrefix(got[3], "503") {
		t.Errorf("RCPT after the refused MAIL: %q, want 503", got)
	}

	roomy := newSMTPDInstance(t, nil)
	rsock := filepath.Join(roomy.queue, "lock", "inject.sock")
	startQueued(t, roomy.queue, rsock)
	setDatabytes(t, roomy, queueFree(t, roomy.queue)/4)
	raddr := roomy.standalone(t, []string{"GW_QUEUED=" + rsock})
	out := swaks(t, raddr, "--from", "s@sender.example", "--to", "u@example.com")
	if r := replyTo(out, "MAIL"); !strings.HasPrefix(r, "250") {
		t.Errorf("MAIL with room: %q\n%s", r, out)
	}
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250") {
		t.Errorf("the message with room: %q", r)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued by the refused session", n)
	}
	if n := len(roomy.messages(t)); n != 1 {
		t.Errorf("%d messages queued with room, want 1", n)
	}
}

// TestQMTPDFreeSpace: the same for gw-qmtpd, which learns the queue from
// GW_QUEUE (gw-queue's way): a package is answered Z 4.3.1 and nothing of
// it is queued; the connection goes on, and the next package gets the
// same answer.
func TestQMTPDFreeSpace(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	setDatabytes(t, in, queueFree(t, in.queue))
	addr := in.qmtpdStandalone(t, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	pkg := qmtpPackage("Subject: hi\n\nhello\n", "s@sender.example", "u@example.com")
	io.WriteString(conn, pkg+pkg)
	conn.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		s, _, err := qmtp.ReadString(br, qmtp.MaxResponse, qmtp.MaxResponse)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if !strings.HasPrefix(string(s), "Z") || !strings.Contains(string(s), "#4.3.1") {
			t.Errorf("response %d: %q, want Z … #4.3.1", i, s)
		}
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}
