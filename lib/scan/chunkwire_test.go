package scan

import (
	"bytes"
	"testing"

	"gw/lib/dotstuff"
)

// unstuff turns DATA's wire form back into the bytes a chunk carries:
// the final dot dropped, and each line's added leading dot.
func unstuff(data []byte) []byte {
	data = bytes.TrimSuffix(data, []byte(".\r\n"))
	var out []byte
	for _, l := range bytes.SplitAfter(data, []byte("\r\n")) {
		if bytes.HasPrefix(l, []byte(".")) {
			l = l[1:]
		}
		out = append(out, l...)
	}
	return out
}

// wireForms writes msg, cut at split, as DATA and as a BDAT chunk.
func wireForms(msg []byte, split int) (data, chunk []byte) {
	var d bytes.Buffer
	dw := dotstuff.NewWriter(&d)
	var c chunkWire
	split = min(max(split, 0), len(msg))
	for _, part := range [][]byte{msg[:split], msg[split:]} {
		dw.Write(part)
		c.Write(part)
	}
	dw.End()
	return d.Bytes(), c.end()
}

// TestChunkWire: a chunk carries what DATA carries, without the dots.
func TestChunkWire(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"a\nb\n", "a\r\nb\r\n"},
		{".dot\n..two\n", ".dot\r\n..two\r\n"},
		{"crlf\r\nlone\rcr\n", "crlf\r\nlone cr\r\n"},
		{"no end", "no end\r\n"},
		{"ends in cr\r", "ends in cr \r\n"},
		{"", "\r\n"},
	} {
		for split := 0; split <= len(tc.msg); split++ {
			data, chunk := wireForms([]byte(tc.msg), split)
			if string(chunk) != tc.want {
				t.Errorf("%q split at %d: chunk %q, want %q", tc.msg, split, chunk, tc.want)
			}
			if u := unstuff(data); !bytes.Equal(u, chunk) {
				t.Errorf("%q split at %d: DATA carries %q, the chunk %q", tc.msg, split, u, chunk)
			}
		}
	}
}

// FuzzChunkWire: for any message, cut anywhere, the chunk is what DATA
// carries without its dots, and holds no lone CR or LF.
func FuzzChunkWire(f *testing.F) {
	f.Add([]byte("Subject: x\n\n.body\r\nline\rmore\n"), 5)
	f.Add([]byte("\r"), 1)
	f.Fuzz(func(t *testing.T, msg []byte, split int) {
		data, chunk := wireForms(msg, split)
		if u := unstuff(data); !bytes.Equal(u, chunk) {
			t.Fatalf("DATA carries %q, the chunk %q", u, chunk)
		}
		rest := bytes.ReplaceAll(chunk, []byte("\r\n"), nil)
		if bytes.ContainsAny(rest, "\r\n") {
			t.Fatalf("lone line end in %q", chunk)
		}
	})
}
