package dotstuff

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
	"testing"
)

// wire is what goes out for a stored message written in chunks: gw's
// Writer straight to the connection, then the last line end and the
// final dot through the DotWriter go-smtp's client writes DATA with, as
// smtpDelivery.Body and Commit do.
func wire(chunks ...string) string {
	var b bytes.Buffer
	dot := textproto.NewWriter(bufio.NewWriter(&b)).DotWriter()
	d := NewWriter(&b)
	for _, c := range chunks {
		d.Write([]byte(c))
	}
	d.Close()
	dot.Write([]byte("\n"))
	dot.Close()
	return b.String()
}

// reference is the wire form made the slow, obvious way: lone CRs to
// spaces and CRLF to LF a byte at a time, then everything through the
// DotWriter (LF to CRLF, dot-stuffing, the final dot).
func reference(in string) string {
	var lf []byte
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
		case in[i] == '\r':
			lf = append(lf, ' ')
		default:
			lf = append(lf, in[i])
		}
	}
	var b bytes.Buffer
	dot := textproto.NewWriter(bufio.NewWriter(&b)).DotWriter()
	dot.Write(lf)
	dot.Close()
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
		{"lf alone", []string{"\n"}, "\r\n.\r\n"},
		{"empty lines", []string{"\n\n", "\n"}, "\r\n\r\n\r\n.\r\n"},
		{"dot after a split line end", []string{"a\n", ".b\r", "\n.", "c"}, "a\r\n..b\r\n..c\r\n.\r\n"},
		{"dot alone, no final newline", []string{"a\n."}, "a\r\n..\r\n.\r\n"},
		{"8-bit and NUL", []string{"\xe9t\xe9\x00\xff\n"}, "\xe9t\xe9\x00\xff\r\n.\r\n"},
		{"cr cr", []string{"a\r\rb"}, "a  b\r\n.\r\n"},
	}
	for _, c := range cases {
		if got := wire(c.in...); got != c.want {
			t.Errorf("%s: %q gives %q, want %q", c.name, c.in, got, c.want)
		}
		if got := ended(c.in...); got != c.want {
			t.Errorf("%s: %q ended by End gives %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// ended is the wire form written by a Writer that ends the data itself
// (End), as gw-scan's proxy does.
func ended(chunks ...string) string {
	var w writes
	d := NewWriter(&w)
	for _, c := range chunks {
		d.Write([]byte(c))
	}
	d.End()
	return string(bytes.Join(w.blocks, nil))
}

// TestDataWriterBlocks: a body far over the block size, with lines of
// every length up to a line longer than a block, comes out as the
// reference makes it, in blocks of FlushAt bytes or more.
func TestDataWriterBlocks(t *testing.T) {
	var in strings.Builder
	for i := 0; in.Len() < 5*FlushAt; i++ {
		if i%7 == 0 {
			in.WriteByte('.')
		}
		in.WriteString(strings.Repeat("x", i*37%300))
		in.WriteString([]string{"\n", "\r\n", "\r"}[i%3])
	}
	in.WriteString(strings.Repeat("y", 3*FlushAt) + "\n.\n")
	msg := in.String()
	var w writes
	d := NewWriter(&w)
	for rest := msg; len(rest) > 0; { // in odd pieces, as a reader returns them
		k := min(len(rest), 12345)
		d.Write([]byte(rest[:k]))
		rest = rest[k:]
	}
	d.Close()
	got := string(bytes.Join(w.blocks, nil)) + "\r\n.\r\n"
	if want := reference(msg); got != want {
		t.Fatalf("wire form differs from the reference (%d bytes, want %d)", len(got), len(want))
	}
	for i, b := range w.blocks[:len(w.blocks)-1] {
		if len(b) < FlushAt {
			t.Errorf("block %d of %d is %d bytes, under %d", i, len(w.blocks), len(b), FlushAt)
		}
	}
	if max := len(msg)/FlushAt + 2; len(w.blocks) > max {
		t.Errorf("%d writes for %d bytes, want at most %d", len(w.blocks), len(msg), max)
	}
}

// writes records each write it is given.
type writes struct{ blocks [][]byte }

func (w *writes) Write(p []byte) (int, error) {
	w.blocks = append(w.blocks, append([]byte(nil), p...))
	return len(p), nil
}

// FuzzDotWriter checks the wire form against the reference, and on its
// own terms: only CRLF line ends, no lone CR or LF, and the end-of-data
// sequence only at the very end.
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
		if want := reference(in); out != want {
			t.Fatalf("%q in %d chunks: %q, the reference gives %q", in, len(chunks), out, want)
		}
		if e := ended(chunks...); e != out {
			t.Fatalf("%q in %d chunks: End gives %q, Close and the DotWriter %q", in, len(chunks), e, out)
		}
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

// BenchmarkDataWriter: a 100 KiB stored message in DATA's wire form, as
// gw-send writes it (Writer), and as net/textproto's DotWriter alone
// writes it through a 4 KiB bufio.Writer, go-smtp's client's way; the
// writes each makes to the connection are reported.
func BenchmarkDataWriter(b *testing.B) {
	var msg bytes.Buffer
	for i := 0; msg.Len() < 100<<10; i++ {
		if i%9 == 0 {
			msg.WriteByte('.')
		}
		msg.WriteString(strings.Repeat("x", i*37%120))
		msg.WriteByte('\n')
	}
	body := msg.Bytes()
	b.Run("Writer", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var cw countingWriter
		buf := make([]byte, 0, BufSize) // Body's comes from a pool
		for b.Loop() {
			d := &Writer{w: &cw, buf: buf}
			for rest := body; len(rest) > 0; rest = rest[min(len(rest), 64<<10):] {
				d.Write(rest[:min(len(rest), 64<<10)])
			}
			d.Close()
		}
		b.ReportMetric(float64(cw.n)/float64(b.N), "writes/op")
	})
	b.Run("DotWriter", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var cw countingWriter
		for b.Loop() {
			dot := textproto.NewWriter(bufio.NewWriter(&cw)).DotWriter()
			dot.Write(body)
			dot.Close()
		}
		b.ReportMetric(float64(cw.n)/float64(b.N), "writes/op")
	})
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n++
	return len(p), nil
}
