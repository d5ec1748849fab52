package sessiontest

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// reads returns what each Read of a Conn on script gives, p of size n.
func reads(t testing.TB, script string, n int) []string {
	var mu sync.Mutex
	c := NewConn(strings.NewReader(script), io.Discard, &mu)
	var out []string
	p := make([]byte, n)
	for i := 0; i < 1<<20; i++ {
		k, err := c.Read(p)
		if k > 0 {
			out = append(out, string(p[:k]))
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatalf("Read never ended")
	return nil
}

// TestConnOneLineARead: each Read gives one line at most, a bare LF is
// sent as CRLF, CRLF stays, a last line without an end stays as it is.
func TestConnOneLineARead(t *testing.T) {
	got := reads(t, "HELO a\nMAIL FROM:<x@y>\r\n\n.\nQUIT", 4096)
	want := []string{"HELO a\r\n", "MAIL FROM:<x@y>\r\n", "\r\n", ".\r\n", "QUIT"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reads %q, want %q", got, want)
	}
	// A small buffer takes a line in pieces, never two lines at once.
	got = reads(t, "EHLO client.example\nQUIT\n", 5)
	want = []string{"EHLO ", "clien", "t.exa", "mple\r", "\n", "QUIT\r", "\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reads %q, want %q", got, want)
	}
}

// TestConnWrites: replies go to the transcript whole, under the lock
// the explanations share.
func TestConnWrites(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	c := NewConn(strings.NewReader(""), &out, &mu)
	e := NewExplainer(&out, &mu)
	c.Write([]byte("220 gw ESMTP\r\n"))
	e.Line("relay: refused\nsecond line")
	c.Write([]byte("553 5.7.1 no\r\n"))
	want := "220 gw ESMTP\r\n>>> relay: refused\n>>> second line\n553 5.7.1 no\r\n"
	if out.String() != want {
		t.Errorf("transcript %q, want %q", out.String(), want)
	}
}

// FuzzConn: whatever the script, the bytes read are the script with each
// bare LF made CRLF, and no Read gives more than one line.
func FuzzConn(f *testing.F) {
	f.Add("HELO a\nQUIT\n", 4096)
	f.Add("DATA\r\n.\r\n\n\n", 3)
	f.Add("\r\r\n\n", 1)
	f.Add(strings.Repeat("x", 5000)+"\n", 4096)
	f.Add(strings.Repeat("x", 4095)+"\r\nQUIT\n", 4096) // CRLF split by the reader's buffer
	f.Fuzz(func(t *testing.T, script string, n int) {
		if n < 1 || n > 1<<16 {
			return
		}
		got := reads(t, script, n)
		var want strings.Builder
		for i := 0; i < len(script); i++ {
			if script[i] == '\n' && (i == 0 || script[i-1] != '\r') {
				want.WriteString("\r\n")
				continue
			}
			want.WriteByte(script[i])
		}
		if strings.Join(got, "") != want.String() {
			t.Fatalf("read %q, want %q", strings.Join(got, ""), want.String())
		}
		for _, r := range got {
			if i := strings.IndexByte(r, '\n'); i >= 0 && i != len(r)-1 {
				t.Fatalf("one Read gave more than a line: %q", r)
			}
		}
	})
}
