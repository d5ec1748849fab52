package milter

import (
	"bytes"
	"testing"
)

// FuzzParse: any control file is parsed or refused, never a panic, and
// what is accepted has a name, a socket and a timeout.
func FuzzParse(f *testing.F) {
	f.Add("opendkim unix:/run/opendkim.sock timeout=5s default=accept\n")
	f.Add("a inet:8891@127.0.0.1\n# comment\nb inet6:1@[::1] default=reject\n")
	f.Fuzz(func(t *testing.T, text string) {
		list, err := Parse(text)
		if err != nil {
			return
		}
		for _, m := range list {
			if m.Name == "" || m.Address == "" || m.Timeout <= 0 {
				t.Fatalf("accepted %+v", m)
			}
		}
	})
}

// FuzzSplit: a stored message split for the milters and joined again is
// the same bytes, whatever it holds.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("Subject: a\n\tb\nTo: c\n\nbody\n"))
	f.Add([]byte("no header at all\n"))
	f.Add([]byte("Subject: x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := split(b)
		if got := m.bytes(); !bytes.Equal(got, b) {
			t.Fatalf("split and joined:\n%q\nwant\n%q", got, b)
		}
	})
}
