package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadData(t *testing.T) {
	cases := []struct {
		name, in, want, rest string
		err                  error
	}{
		{"plain", "a\r\nb\r\n.\r\nQUIT\r\n", "a\nb\n", "QUIT\r\n", nil},
		{"empty message", ".\r\n", "", "", nil},
		{"empty last line", "a\r\n\r\n.\r\n", "a\n\n", "", nil},
		{"dot stuffing", "..a\r\n.b\r\n..\r\n.\r\n", ".a\nb\n.\n", "", nil},
		{"stray CR before CRLF", "text\r\r\n.\r\n", "text\r\n", "", nil},
		{"two stray CRs", "x\r\r\r\n.\r\n", "x\r\r\n", "", nil},
		{"stray CR alone on a line", "\r\r\n.\r\n", "\r\n", "", nil},
		{"bare LF", "a\nb\r\n.\r\n", "a", "b\r\n.\r\n", errBareLF},
		{"LF dot LF", "a\r\n.\n", "a\n", "", errBareLF},
		{"LF dot CRLF", "a\n.\r\n", "a", ".\r\n", errBareLF},
		{"bare CR", "a\rb\r\n.\r\n", "a", "\r\n.\r\n", errBareCR},
		{"CR dot CR", "a\r.\r\n", "a", ".\r\n", errBareCR},
		{"dot CR x", "a\r\n.\rX\r\n.\r\n", "a\n", "\r\n.\r\n", errBareCR},
		// A dot line with a stray CR is the end of data to a server that
		// folds CR CR LF into CRLF: refused, not kept as data (gw-smtpd(8)).
		{"dot CR CRLF", "a\r\n.\r\r\nMAIL FROM:<x@y>\r\n.\r\n", "a\n", "", errBareCR},
		{"CRLF dot LF smuggle", "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", "a\n", "MAIL FROM:<x@y>\r\n.\r\n", errBareLF},
		{"NUL kept", "a\x00b\r\n.\r\n", "a\x00b\n", "", nil},
		{"unterminated", "a\r\nb", "a\nb", "", io.EOF},
		{"header dot line", "X: y\r\n\r\n.\r\n", "X: y\n\n", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				var r io.Reader = strings.NewReader(c.in)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				br := bufio.NewReaderSize(r, 16)
				var out bytes.Buffer
				err := readData(br, &out)
				if !errors.Is(err, c.err) || out.String() != c.want {
					t.Fatalf("readData(%q) one byte=%v = %q, %v; want %q, %v", c.in, oneByte, out.String(), err, c.want, c.err)
				}
				if c.err == nil || c.err == errBareLF || c.err == errBareCR {
					rest, _ := io.ReadAll(br)
					if c.err == nil && string(rest) != c.rest {
						t.Errorf("after readData(%q): left %q, want %q", c.in, rest, c.rest)
					}
				}
			}
		})
	}
}

// referenceData is the byte-at-a-time statement of DATA's policy that
// readData must agree with.
func referenceData(in []byte) (out []byte, consumed int, err error) {
	sol := true
	for i := 0; i < len(in); {
		line := in[i:]
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			// unterminated: check for stray CR/LF issues within
			if sol && bytes.HasPrefix(line, []byte(".\r\r")) {
				return out, 0, errBareCR
			}
			for k, c := range line {
				if c == '\r' {
					rest := line[k:]
					allCR := len(bytes.Trim(rest, "\r")) == 0
					if !allCR {
						return out, 0, errBareCR
					}
					break
				}
			}
			return out, 0, io.EOF
		}
		l := line[:j+1]
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return out, 0, errBareLF
		}
		body := l[:len(l)-2]
		// CRs inside body are allowed only as a run at its end
		if k := bytes.IndexByte(body, '\r'); k >= 0 && len(bytes.Trim(body[k:], "\r")) != 0 {
			return out, 0, errBareCR
		}
		if sol && len(body) >= 1 && body[0] == '.' {
			if len(body) == 1 {
				return out, i + j + 1, nil
			}
			if body[1] == '\r' {
				return out, 0, errBareCR
			}
			body = body[1:]
		}
		out = append(out, body...)
		out = append(out, '\n')
		i += j + 1
	}
	return out, 0, io.EOF
}

func FuzzReadData(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "..x\r\n.\r\n", "a\r\r\n.\r\n", "a\n.\n", "a\r.\r", "\r\n.\r\nQUIT\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		err := readData(br, &out)
		want, consumed, werr := referenceData(in)
		if class(err) != class(werr) {
			t.Fatalf("readData(%q) error %v, reference %v", in, err, werr)
		}
		if werr == nil {
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("readData(%q) = %q, reference %q", in, out.Bytes(), want)
			}
			rest, _ := io.ReadAll(br)
			if left := len(in) - consumed; len(rest) != left {
				t.Fatalf("readData(%q) left %d bytes, reference %d", in, len(rest), left)
			}
		}
	})
}

// class groups errors the session treats alike: a bare LF and a bare CR
// both end it with errBareLine, whichever comes first.
func class(err error) string {
	switch {
	case err == nil:
		return "end"
	case errors.Is(err, errBareLF), errors.Is(err, errBareCR):
		return "bare"
	}
	return "eof"
}

// writeCounter counts the writes a reader makes.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

// A message that fits the read buffer reaches the sink in one write, not
// two a line: the per-line writes were most of what DATA cost.
func TestReadDataOneWriteABuffer(t *testing.T) {
	var in, want strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&in, "..line %d of text\r\r\r\n", i)
		fmt.Fprintf(&want, ".line %d of text\r\r\n", i)
	}
	in.WriteString("\r\n.\r\nQUIT\r\n")
	want.WriteString("\n")
	br := bufio.NewReaderSize(strings.NewReader(in.String()), 64<<10)
	var out writeCounter
	if err := readData(br, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String() {
		t.Fatalf("stored form differs:\n%q\nwant\n%q", out.String(), want.String())
	}
	if out.writes != 1 {
		t.Errorf("%d writes for a message in one buffer, want 1", out.writes)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "QUIT\r\n" {
		t.Errorf("left %q, want the pipelined QUIT intact", rest)
	}
}
