package tcpserver

import (
	"strconv"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzDotted holds the name a client's DNS chose to what the rules
// lookup and the environment may meet: letters in lower case, digits,
// '-', '_', '.' between labels and \ooo escapes only, and the escapes
// give back exactly the name's labels.
func FuzzDotted(f *testing.F) {
	for _, s := range []string{"mail.example.net.", `a\032b.EXAMPLE.`, `a\.b.`, ".", `\255\000.x.`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		wire := make([]byte, 256)
		n, err := mdns.PackDomainName(mdns.Fqdn(name), wire, 0, nil, false)
		got, ok := dotted(name)
		if err != nil || !ok {
			if ok {
				t.Fatalf("dotted(%q) = %q for a name that does not pack: %v", name, got, err)
			}
			return
		}
		if got == "." {
			if n != 1 {
				t.Fatalf("dotted(%q) = \".\" for a name that is not the root", name)
			}
			return
		}
		var labels []string
		for i := 0; wire[i] != 0; i += 1 + int(wire[i]) {
			labels = append(labels, asciiLower(wire[i+1:i+1+int(wire[i])]))
		}
		parts := strings.Split(got, ".")
		if len(parts) != len(labels) {
			t.Fatalf("dotted(%q) = %q: %d labels, want %d", name, got, len(parts), len(labels))
		}
		for i, p := range parts {
			if back := undot(t, p); back != labels[i] {
				t.Fatalf("dotted(%q) = %q: label %d reads %q, want %q", name, got, i, back, labels[i])
			}
		}
	})
}

// undot reads back one label of dotted's output, failing on any byte
// dotted must not write.
func undot(t *testing.T, s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_':
			b = append(b, c)
		case c == '\\' && i+4 <= len(s):
			v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err != nil {
				t.Fatalf("bad escape in %q: %v", s, err)
			}
			b = append(b, byte(v))
			i += 3
		default:
			t.Fatalf("byte %q in %q", c, s)
		}
	}
	return string(b)
}

// asciiLower lowers A-Z only: a label is bytes, not UTF-8.
func asciiLower(b []byte) string {
	l := []byte(string(b))
	for i, c := range l {
		if c >= 'A' && c <= 'Z' {
			l[i] = c + 'a' - 'A'
		}
	}
	return string(l)
}
