package tests

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRelayBodiesExact sends bodies that stress every byte path of the
// relay — leading dots, 8-bit bytes, lines of every length, sizes either
// side of gw-smtpd's in-memory limit for gw-queued (64 KiB), of
// gw-queued's in-memory limit (1 MiB) and of gw-send's write blocks, and
// a 10 MiB one — over SMTP through gw-smtpd, gw-queued's socket and
// gw-send to a real receiver, and one with lone CRs through gw-queue,
// which takes them. Each arrives as it was sent, under the trace lines
// the gateway adds; the lone CRs arrive as spaces.
func TestRelayBodiesExact(t *testing.T) {
	rv := startReceiver(t)
	in := newSMTPDInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d\n", rv.port)})
	sock := filepath.Join(in.dir, "inject.sock")
	qd := exec.Command(bin("gw-queued"), "--queue", in.queue, "--socket", sock)
	qd.Stderr = os.Stderr
	if err := qd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qd.Process.Kill(); qd.Wait() })
	waitFor(t, "gw-queued's socket", 5*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	addr := in.standalone(t, []string{"GW_QUEUED=" + sock})
	send := exec.Command(bin("gw-send"), "--queue", in.queue, "--control-dir", in.control)
	slog := &sendLog{}
	send.Stderr = slog
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		send.Process.Kill()
		send.Wait()
		if t.Failed() {
			t.Logf("gw-send log:\n%s", slog.String())
		}
	})

	// The client says: MAIL, RCPT, DATA and each body; Go's client turns
	// its LF into CRLF and stuffs the dots. The receiver undoes the dots.
	bodies := map[string]string{
		"dots":                       ".leading\n..two\n.\n. space\nmiddle . dot\n...\n",
		"8-bit":                      "caf\xc3\xa9 \xe2\x82\xac\n\x80\x81\xfe\xff\n\xe9t\xe9 latin-1\n",
		"empty lines and a dot last": "\n\n.\n\n.",
	}
	for _, size := range []int{64<<10 - 100, 64<<10 + 100, 100 << 10, 1<<20 - 100, 1<<20 + 100, 10 << 20} {
		bodies[fmt.Sprintf("%d bytes", size)] = bodyOf(size)
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, body := range bodies {
		msg := "Subject: " + name + "\n\n" + body
		if err := c.Mail("s@sender.example"); err != nil {
			t.Fatalf("%s: MAIL: %v", name, err)
		}
		if err := c.Rcpt("u@example.com"); err != nil {
			t.Fatalf("%s: RCPT: %v", name, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatalf("%s: DATA: %v", name, err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatalf("%s: end of data: %v", name, err)
		}
	}
	c.Quit()

	// gw-queue takes what SMTP refuses: lone CRs, which go out as spaces.
	lone := "Subject: lone CR\n\na\rb\r\n.c\rd\n\r"
	cmd := exec.Command(bin("gw-queue"))
	cmd.Env = append(os.Environ(), "GW_QUEUE="+in.queue)
	cmd.Stdin = strings.NewReader(lone)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Fs@sender.example\x00Tu@example.com\x00\x00"))
	w.Close()
	cmd.Stdout = r
	qlog := &sendLog{}
	cmd.Stderr = qlog
	if err := cmd.Run(); err != nil {
		t.Fatalf("gw-queue: %v: %s", err, qlog.String())
	}
	r.Close()

	want := map[string]string{"lone CR": "Subject: lone CR\r\n\r\na b\r\n.c d\r\n \r\n"}
	for name, body := range bodies {
		wire := strings.ReplaceAll("Subject: "+name+"\n\n"+body, "\n", "\r\n")
		if !strings.HasSuffix(wire, "\r\n") {
			wire += "\r\n" // the client ends the last line
		}
		want[name] = wire
	}
	waitFor(t, "every message at the receiver", 60*time.Second, func() bool { return len(rv.received()) >= len(want) })
	for _, m := range rv.received() {
		got := afterTrace(m.data)
		name, _, _ := strings.Cut(strings.TrimPrefix(got, "Subject: "), "\r\n")
		w, ok := want[name]
		if !ok {
			t.Errorf("a message nobody sent, or twice: %.80q", got)
			continue
		}
		delete(want, name)
		if got != w {
			i := 0
			for i < len(got) && i < len(w) && got[i] == w[i] {
				i++
			}
			t.Errorf("%s: %d bytes arrived, %d sent; first difference at byte %d: %.40q, want %.40q",
				name, len(got), len(w), i, got[i:], w[min(i, len(w)):])
		}
	}
	for name := range want {
		t.Errorf("%s: never arrived", name)
	}
}

// bodyOf returns a body of size bytes in lines of every length from 0 to
// 997 bytes, some beginning with a dot.
func bodyOf(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		n := i * 131 % 998
		if i%5 == 0 {
			b.WriteByte('.')
			n = max(n-1, 0)
		}
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), n))
		b.WriteByte('\n')
	}
	return b.String()[:size-1] + "\n"
}

// afterTrace returns a message without the trace lines the gateway put on
// top (Received, folded lines included).
func afterTrace(data string) string {
	for strings.HasPrefix(data, "Received:") {
		end := strings.Index(data, "\r\n")
		for end >= 0 && end+2 < len(data) && (data[end+2] == ' ' || data[end+2] == '\t') {
			next := strings.Index(data[end+2:], "\r\n")
			if next < 0 {
				break
			}
			end += 2 + next
		}
		if end < 0 {
			return data
		}
		data = data[end+2:]
	}
	return data
}
