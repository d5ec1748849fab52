package deliver

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
	"testing"
)

// wire is what goes out for a stored message written in chunks: gw's
// lineEnds in front of the DotWriter go-smtp's client writes DATA with.
func wire(chunks ...string) string {
	var b bytes.Buffer
	dw := textproto.NewWriter(bufio.NewWriter(&b)).DotWriter()
	l := &lineEnds{w: dw}
	for _, c := range chunks {
		l.Write([]byte(c))
	}
	l.Close()
	dw.Close()
	return b.String()
}

func TestDotWriter(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want string
	}{
		{"lf", []string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},
		{"crlf", []string{"a\r\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{"no final newline", []string{"a"}, "a\r\n.\r\n"},
		// DotWriter ends an empty message with an empty line.
		{"empty", nil, "\r\n.\r\n"},
		{"dot stuffing", []string{".a\n..b\n.\n"}, "..a\r\n...b\r\n..\r\n.\r\n"},
		{"lone cr", []string{"x\r.\r\n"}, "x .\r\n.\r\n"},
		{"smuggling lf.lf", []string{"x\n.\nMAIL FROM:<e@vil>\n"}, "x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n"},
		{"smuggling cr.cr", []string{"x\r.\rRSET"}, "x . RSET\r\n.\r\n"},
		{"cr split across writes", []string{"a\r", "\nb"}, "a\r\nb\r\n.\r\n"},
		{"cr at end", []string{"a\r"}, "a \r\n.\r\n"},
		{"crcrlf", []string{"a\r\r\n"}, "a \r\n.\r\n"},
	}
	for _, c := range cases {
		if got := wire(c.in...); got != c.want {
			t.Errorf("%s: %q gives %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// FuzzDotWriter checks the wire form: only CRLF line ends, no lone CR or
// LF, and the end-of-data sequence only at the very end.
func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"a\n.\n", "x\r.\r\n", ".\r\n.\r\n", "\r\r\n", "\n.\n"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, in string, split int) {
		var chunks []string
		if split > 0 && split < len(in) {
			chunks = []string{in[:split], in[split:]}
		} else {
			chunks = []string{in}
		}
		out := wire(chunks...)
		body := strings.TrimSuffix(out, ".\r\n")
		if body == out {
			t.Fatalf("%q: no end of data in %q", in, out)
		}
		if strings.Contains("\r\n"+body, "\r\n.\r\n") {
			t.Fatalf("%q: early end of data in %q", in, out)
		}
		for i := 0; i < len(out); i++ {
			switch out[i] {
			case '\r':
				if i+1 >= len(out) || out[i+1] != '\n' {
					t.Fatalf("%q: lone CR in %q", in, out)
				}
			case '\n':
				if i == 0 || out[i-1] != '\r' {
					t.Fatalf("%q: lone LF in %q", in, out)
				}
			}
		}
	})
}
