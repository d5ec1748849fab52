package tlsrequired

import (
	"bytes"
	"testing"
)

func TestNo(t *testing.T) {
	for _, c := range []struct {
		header string
		want   bool
	}{
		{"Subject: x\nTLS-Required: No\n", true},
		{"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n", true},
		{"tls-required:no\n", true},
		{"TLS-REQUIRED :   NO  \n", true},
		{"TLS-Required:\n No\n", true},             // folded
		{"Subject: a\nTLS-Required: Yes\n", false}, // not a value RFC 8689 defines
		{"TLS-Required: No thanks\n", false},
		{"TLS-Required: Nope\n", false},
		{"X-TLS-Required: No\n", false},
		{"Subject: TLS-Required: No\n", false},
		{" TLS-Required: No\n", false},              // a continuation with no field before it
		{"Subject: a\n\nTLS-Required: No\n", false}, // in the body
		{"Subject: a\n\r\nTLS-Required: No\n", false},
		{"", false},
	} {
		if got := No([]byte(c.header)); got != c.want {
			t.Errorf("No(%q) = %v, want %v", c.header, got, c.want)
		}
	}
}

// FuzzNo: No never panics and does not depend on line ends: the same
// header with LF or CRLF gives the same answer, and nothing after the
// header section changes it.
func FuzzNo(f *testing.F) {
	f.Add([]byte("Subject: x\nTLS-Required: No\n\nbody\n"))
	f.Fuzz(func(t *testing.T, h []byte) {
		got := No(h)
		if bytes.Contains(h, []byte("\r")) {
			return
		}
		if crlf := No(bytes.ReplaceAll(h, []byte("\n"), []byte("\r\n"))); crlf != got {
			t.Fatalf("LF %v, CRLF %v for %q", got, crlf, h)
		}
		// "\n\n" ends any header section, cut mid-line or not
		if after := No(append(h[:len(h):len(h)], "\n\nTLS-Required: No\n"...)); after != got {
			t.Fatalf("a field after the header section counted: %q", h)
		}
	})
}
