package inject

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadReply feeds a client whatever a server might answer: the reply
// is read without a panic, never past its own end (the next reply starts
// where this one stops), and a queue id is only ever one that PlainQID
// accepts.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte{0}, byte(1))
	f.Add([]byte{0, 13, '0', '6', '6', '9', 'a', '1', 'b', '2', 'c', '3', 'd', '4', 'e'}, byte(2))
	f.Add([]byte{53}, byte(2))
	f.Add([]byte{0, 5, 'a', '\r', '\n', 'b', 'c'}, byte(2))
	f.Add([]byte{0, 0}, byte(2))
	f.Add([]byte{0, 200, 'x'}, byte(2))
	f.Fuzz(func(t *testing.T, in []byte, v byte) {
		r := bytes.NewReader(in)
		code, qid, err := readReply(r, v)
		used := len(in) - r.Len()
		if err != nil && !errors.Is(err, errBadQID) {
			return // short: the connection is dropped
		}
		if code != int(in[0]) {
			t.Fatalf("code %d from a reply starting with %d", code, in[0])
		}
		want := 1
		if v >= Version2 && code == 0 {
			want = 2 + int(in[1])
		}
		if used != want {
			t.Fatalf("read %d bytes of the reply %x (version %d), want %d", used, in, v, want)
		}
		if qid != "" && (!PlainQID(qid) || v < Version2) {
			t.Fatalf("queue id %q accepted from %x (version %d)", qid, in, v)
		}
		if errors.Is(err, errBadQID) && qid != "" {
			t.Fatalf("a bad queue id kept: %q", qid)
		}
	})
}
