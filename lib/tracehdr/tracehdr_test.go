package tracehdr

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		value string
		want  Link
		ok    bool
	}{
		{"host=gw1.example.net qid=0669a1b2c3d4e", Link{"gw1.example.net", "0669a1b2c3d4e"}, true},
		{"  host=gw1.example.net\r\n\tqid=0669a1b2c3d4e ", Link{"gw1.example.net", "0669a1b2c3d4e"}, true},
		{"host=[127.0.0.1] qid=0669a1b2c3d4e", Link{"[127.0.0.1]", "0669a1b2c3d4e"}, true},
		{"qid=0669a1b2c3d4e host=gw1.example.net", Link{}, false}, // order is fixed
		{"host=gw1.example.net qid=0669A1B2C3D4E", Link{}, false}, // a qid is lowercase
		{"host=gw1.example.net qid=0669a1b2c3d4", Link{}, false},  // 12 digits
		{"host=gw1 example qid=0669a1b2c3d4e", Link{}, false},     // three words
		{"host=gw1/evil qid=0669a1b2c3d4e", Link{}, false},        // '/' would split prev=
		{"host=gw1\x1b[2J qid=0669a1b2c3d4e", Link{}, false},      // terminal escapes
		{"host= qid=0669a1b2c3d4e", Link{}, false},                // no host
		{"host=" + strings.Repeat("a", MaxHost+1) + " qid=0669a1b2c3d4e", Link{}, false},
		{"", Link{}, false},
	} {
		got, ok := Parse(c.value)
		if got != c.want || ok != c.ok {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", c.value, got, ok, c.want, c.ok)
		}
	}
	l := Link{"gw1.example.net", "0669a1b2c3d4e"}
	field := Field(l)
	if got, ok := Parse(strings.TrimPrefix(strings.TrimSuffix(field, "\n"), Name+":")); !ok || got != l {
		t.Errorf("Field %q does not parse back: %+v %v", field, got, ok)
	}
}

// strip runs in through a Stripper in chunks of n bytes.
func strip(in string, n int) (string, *Stripper) {
	var out bytes.Buffer
	s := &Stripper{Out: &out}
	for len(in) > 0 {
		k := min(n, len(in))
		s.Write([]byte(in[:k]))
		in = in[k:]
	}
	s.Flush()
	return out.String(), s
}

func TestStripper(t *testing.T) {
	for _, c := range []struct{ name, in, want, value string }{
		{"on top, as gw-send puts it",
			"X-Gw-Trace: host=a.example qid=0669a1b2c3d4e\nSubject: hi\n\nbody\n",
			"Subject: hi\n\nbody\n", "host=a.example qid=0669a1b2c3d4e"},
		{"anywhere, any case, folded, CRLF",
			"Subject: hi\r\nx-gw-TRACE: host=forged.example\r\n qid=0000000000001\r\nTo: b\r\n\r\nbody\r\n",
			"Subject: hi\r\nTo: b\r\n\r\nbody\r\n", "host=forged.example qid=0000000000001"},
		{"obsolete space before the colon, and a second field",
			"X-Gw-Trace : first\nX-Gw-Trace: second\nTo: b\n\n",
			"To: b\n\n", "first"},
		{"in the body it is text",
			"Subject: hi\n\nX-Gw-Trace: host=a qid=0669a1b2c3d4e\n",
			"Subject: hi\n\nX-Gw-Trace: host=a qid=0669a1b2c3d4e\n", ""},
		{"names that only start alike pass",
			"X-Gw-Traced: yes\nX-Gw-Trac: no\n\n",
			"X-Gw-Traced: yes\nX-Gw-Trac: no\n\n", ""},
		{"a message that ends inside a line start",
			"Subject: hi\nX-Gw",
			"Subject: hi\nX-Gw", ""},
		{"a header line with no colon, then a folded line",
			"garbage line\n continued\nX-Gw-Trace: x\n\n",
			"garbage line\n continued\n\n", "x"},
	} {
		for _, n := range []int{1, 2, 7, 1 << 20} {
			got, s := strip(c.in, n)
			if got != c.want || s.Value() != c.value {
				t.Errorf("%s (chunks of %d):\n got %q value %q\nwant %q value %q", c.name, n, got, s.Value(), c.want, c.value)
			}
		}
	}
}

func TestStripperValueBounded(t *testing.T) {
	_, s := strip("X-Gw-Trace: "+strings.Repeat("x", 10*MaxValue)+"\n\n", 100)
	if len(s.Value()) > MaxValue {
		t.Errorf("value kept %d bytes, bound %d", len(s.Value()), MaxValue)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestStripperPassesOutsError(t *testing.T) {
	s := &Stripper{Out: failWriter{}}
	if _, err := s.Write([]byte("Subject: x\n\nbody\n")); err == nil {
		t.Error("Out's error was not returned")
	}
}

// reference strips by whole lines, the way the field is defined.
func reference(in string) string {
	var out strings.Builder
	drop, body := false, false
	for _, line := range strings.SplitAfter(in, "\n") {
		switch {
		case body:
		case line == "\n" || line == "\r\n":
			body, drop = true, false
		case line != "" && (line[0] == ' ' || line[0] == '\t'):
		default:
			drop = false
			if i := strings.IndexByte(line, ':'); i >= 0 && i < maxName && strings.IndexByte(line[:i], '\n') < 0 {
				drop = strings.EqualFold(strings.TrimRight(line[:i], " \t"), Name)
			}
		}
		if !drop || body {
			out.WriteString(line)
		}
	}
	return out.String()
}

// FuzzStripper: whatever the chunking, the Stripper writes what the
// line-by-line definition keeps, and no X-Gw-Trace field survives in the
// header.
func FuzzStripper(f *testing.F) {
	f.Add("X-Gw-Trace: host=a qid=0669a1b2c3d4e\nSubject: s\n\nb\n", uint8(3))
	f.Add("A: b\r\nx-gw-trace\t:\r\n\tz\r\n\r\nX-Gw-Trace: body\r\n", uint8(1))
	f.Fuzz(func(t *testing.T, in string, chunk uint8) {
		got, _ := strip(in, int(chunk)+1)
		if want := reference(in); got != want {
			t.Fatalf("stripped %q\n got %q\nwant %q", in, got, want)
		}
		for _, l := range strings.Split(got, "\n") {
			l = strings.TrimSuffix(l, "\r")
			if l == "" {
				break // the header's end
			}
			if name, _, ok := strings.Cut(l, ":"); ok && len(name) < maxName && strings.EqualFold(strings.TrimRight(name, " \t"), Name) {
				t.Fatalf("an X-Gw-Trace field survived: %q in %q", l, got)
			}
		}
	})
}

// FuzzParse: a link that parses names a host and qid that cannot break
// the prev= field (no space, '/' or control byte) and formats back to
// itself.
func FuzzParse(f *testing.F) {
	f.Add("host=gw1.example.net qid=0669a1b2c3d4e")
	f.Add("host=[::1] qid=0669a1b2c3d4e\r\n")
	f.Fuzz(func(t *testing.T, v string) {
		l, ok := Parse(v)
		if !ok {
			return
		}
		if strings.ContainsAny(l.String(), " \t\r\n\"=") || strings.Count(l.String(), "/") != 1 {
			t.Fatalf("Parse(%q) = %q: breaks a log field", v, l)
		}
		if back, ok := Parse(strings.TrimPrefix(strings.TrimSuffix(Field(l), "\n"), Name+":")); !ok || back != l {
			t.Fatalf("%+v does not round-trip", l)
		}
	})
}
