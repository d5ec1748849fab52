package smtpd

import (
	"bytes"
	"testing"
)

func TestRemoveMarks(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
		n              int
	}{
		{"none", "Subject: hi\n\nbody\n", "Subject: hi\n\nbody\n", 0},
		{"one", "X-Gw-Quarantine: dmarc; forged\nSubject: hi\n\nbody\n", "Subject: hi\n\nbody\n", 1},
		{"folded, any case, CRLF", "Subject: hi\r\nx-gw-QUARANTINE : milter;\r\n  folded\r\nTo: b\r\n\r\nbody\r\n", "Subject: hi\r\nTo: b\r\n\r\nbody\r\n", 1},
		{"several", "X-Gw-Quarantine: a\nX-Gw-Quarantine: b\nFrom: x\n\n", "From: x\n\n", 2},
		{"in the body stays", "Subject: hi\n\nX-Gw-Quarantine: quoted\n", "Subject: hi\n\nX-Gw-Quarantine: quoted\n", 0},
		{"a longer name stays", "X-Gw-Quarantined: no\n\n", "X-Gw-Quarantined: no\n\n", 0},
		{"no body, no line end", "X-Gw-Quarantine: x", "", 1},
	} {
		if got, n := removeMarks([]byte(c.in)); string(got) != c.want || n != c.n {
			t.Errorf("%s: %q, %d removed; want %q, %d", c.name, got, n, c.want, c.n)
		}
	}
}

// FuzzRemoveMarks: whatever the header, no mark survives in it, nothing
// else is taken out, and the body is kept byte for byte.
func FuzzRemoveMarks(f *testing.F) {
	f.Add([]byte("X-Gw-Quarantine: dmarc; x\n folded\nSubject: s\n\nbody\n"))
	f.Add([]byte("Subject: s\r\n\r\nX-Gw-Quarantine: in body\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, n := removeMarks(msg)
		if len(out) > len(msg) || n < 0 {
			t.Fatalf("grew or negative: %d → %d, %d", len(msg), len(out), n)
		}
		again, m := removeMarks(out)
		if m != 0 || !bytes.Equal(again, out) {
			t.Fatalf("a mark survived: %q", out)
		}
		if n == 0 && !bytes.Equal(out, msg) {
			t.Fatalf("nothing removed, yet changed: %q → %q", msg, out)
		}
	})
}
