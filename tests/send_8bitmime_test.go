package tests

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sink8 is Postfix's smtp-sink started with -8: a real SMTP server that
// does not offer 8BITMIME. It writes each transaction to a file of dir:
// its envelope as X-Mail-Args and X-Rcpt-Args lines, then the message,
// with LF line ends.
type sink8 struct {
	port int
	dir  string
}

func startSink8(t *testing.T, in *sendInstance) *sink8 {
	t.Helper()
	bin := need(t, "smtp-sink")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink8{port: l.Addr().(*net.TCPAddr).Port, dir: filepath.Join(in.dir, "sink")}
	l.Close()
	os.Mkdir(s.dir, 0o777)
	os.Chmod(s.dir, 0o777)
	args := []string{"-8", "-R", s.dir, "-d", "%H%M%S.", fmt.Sprintf("127.0.0.1:%d", s.port), "10"}
	if os.Getuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "smtp-sink", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// transaction returns the envelope lines and the message of the
// transaction for rcpt, if it came.
// With containing, only a message that holds each of those texts counts:
// several bounces to one sender arrive in no set order.
func (s *sink8) transaction(t *testing.T, rcpt string, containing ...string) (envelope, message string, ok bool) {
	t.Helper()
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		env, msg, found := strings.Cut(string(b), "\nReceived: ")
		if found && strings.Contains(env, "X-Rcpt-Args: <"+rcpt+">") && containsAll(msg, containing) {
			return env, "Received: " + msg, true
		}
	}
	return "", "", false
}

// TestSend8BitToServerWithout8BITMIME: four messages to a server that
// does not offer 8BITMIME (Postfix's smtp-sink -8):
//
//   - a multipart message with 8-bit text parts arrives 7-bit, with no
//     BODY=8BITMIME on MAIL: each 8-bit part in quoted-printable, the
//     7-bit part and the structure byte for byte, and each part decodes
//     back to exactly what was queued;
//   - a message with 8-bit bytes in its Subject cannot be made 7-bit: it
//     fails 5.6.3 and bounces, and the DSN (which quotes that header) is
//     itself made 7-bit on its way to the sender;
//   - a 7-bit message arrives as it was queued;
//   - a message to a UTF-8 address fails 5.6.7 (no SMTPUTF8 either).
func TestSend8BitToServerWithout8BITMIME(t *testing.T) {
	in := newSendInstance(t, map[string]string{})
	sink := startSink8(t, in)
	os.WriteFile(filepath.Join(in.control, "smtproutes"), []byte(fmt.Sprintf(":[127.0.0.1]:%d\n", sink.port)), 0o644)
	in.start(t)

	plain := "Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln =\n" +
		strings.Repeat("\xe2\x82\xac", 40) + " a long line of euros\n" +
		"-- \nsig\n"
	html := "<p>Gr\xc3\xbc\xc3\x9fe</p>\n"
	attached := "QUJD\n"
	multi := "Subject: mixed\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"=_b\"\n" +
		"\n" +
		"--=_b\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"\n" +
		plain +
		"\n--=_b\n" +
		"Content-Type: text/html; charset=utf-8\n" +
		"\n" +
		html +
		"\n--=_b\n" +
		"Content-Type: application/octet-stream\n" +
		"Content-Transfer-Encoding: base64\n" +
		"\n" +
		attached +
		"\n--=_b--\n"
	id1 := in.inject(t, "a@src.test", []string{"multi@dst.test"}, multi)
	id2 := in.inject(t, "a@src.test", []string{"header@dst.test"}, "Subject: Gr\xc3\xbc\xc3\x9fe\n\nbody\n")
	id3 := in.inject(t, "a@src.test", []string{"ascii@dst.test"}, "Subject: ascii\n\nplain text\n")
	id4 := in.inject(t, "a@src.test", []string{"j\xc3\xb6rg@dst.test"}, "Subject: utf8\n\nbody\n")

	waitFor(t, "the four outcomes", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id1, "result=delivered")) == 1 &&
			len(in.lines("delivery", "qid="+id2, "result=failed")) == 1 &&
			len(in.lines("delivery", "qid="+id3, "result=delivered")) == 1 &&
			len(in.lines("delivery", "qid="+id4, "result=failed")) == 1
	})

	env, msg, ok := sink.transaction(t, "multi@dst.test")
	if !ok {
		t.Fatal("the multipart message is not at the sink")
	}
	if strings.Contains(env, "BODY=") {
		t.Errorf("MAIL with a BODY parameter to a server without 8BITMIME: %q", env)
	}
	for i := 0; i < len(msg); i++ {
		if msg[i] >= 0x80 {
			t.Fatalf("8-bit byte at %d of the message as received:\n%s", i, msg)
		}
	}
	for _, want := range []string{
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe aus K=C3=B6ln =3D\n",
		"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
		"--=_b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nQUJD\n\n--=_b--\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message as received lacks %q:\n%s", want, msg)
		}
	}
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for i, want := range []string{plain, html, attached} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, err := io.ReadAll(p) // quoted-printable decoded by the reader
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("part %d decodes to %q, queued %q", i, got, want)
		}
	}

	failed := in.lines("delivery", "qid="+id2, "result=failed")
	if !strings.Contains(failed[0], "554 5.6.3 ") || !strings.Contains(failed[0], "does not offer 8BITMIME") ||
		!strings.Contains(failed[0], " status=5.6.3 ") {
		t.Errorf("8-bit header: %q", failed[0])
	}
	if _, _, ok := sink.transaction(t, "header@dst.test"); ok {
		t.Error("the message with an 8-bit header reached the sink")
	}
	waitFor(t, "the bounce", 10*time.Second, func() bool {
		_, _, ok := sink.transaction(t, "a@src.test", "header@dst.test")
		return ok
	})
	_, dsn, _ := sink.transaction(t, "a@src.test", "header@dst.test")
	for _, want := range []string{"Final-Recipient: rfc822; header@dst.test", "Status: 5.6.3", "Subject: Gr=C3=BC=C3=9Fe"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}

	if l := in.lines("delivery", "qid="+id4); !strings.Contains(l[0], " 5.6.7 ") || !strings.Contains(l[0], " status=5.6.7 ") {
		t.Errorf("UTF-8 recipient to a server without SMTPUTF8: %q", l[0])
	}

	_, ascii, ok := sink.transaction(t, "ascii@dst.test")
	if !ok || !strings.Contains(ascii, "\nSubject: ascii\n\nplain text\n") {
		t.Errorf("7-bit message as received: %q", ascii)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
