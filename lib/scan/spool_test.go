package scan

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestSessionSpool: a message under memSpoolMax stays in memory, a larger
// one moves to a file with what was already written, and either reads
// back byte for byte; the next message starts empty.
func TestSessionSpool(t *testing.T) {
	s := &sessionSpool{dir: t.TempDir()}
	defer s.close()
	for _, size := range []int{0, 10 << 10, memSpoolMax, memSpoolMax + 1, 3 * memSpoolMax, 100} {
		s.reset()
		want := bytes.Repeat([]byte("0123456789abcdef\n"), size/17+1)[:size]
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 8000)
			if k, err := s.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("size %d: Write = %d, %v", size, k, err)
			}
			rest = rest[n:]
		}
		if s.err != nil || s.n != int64(size) {
			t.Fatalf("size %d: spooled %d bytes, err %v", size, s.n, s.err)
		}
		if inFile := s.f != nil; inFile != (size > memSpoolMax) {
			t.Errorf("size %d: in a file = %v", size, inFile)
		}
		got, err := io.ReadAll(io.NewSectionReader(s, 0, s.n))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("size %d: read back %d bytes, err %v", size, len(got), err)
		}
		if size > 0 {
			b := make([]byte, 2)
			if n, err := s.ReadAt(b, int64(size-1)); n != 1 || err != io.EOF {
				t.Errorf("size %d: ReadAt past the end = %d, %v; want 1, EOF", size, n, err)
			}
		}
	}
}

// TestSessionSpoolUnwritable: a message that must go to a file the
// directory refuses keeps its first error for DataEnd's 451, and the
// writer still takes every byte.
func TestSessionSpoolUnwritable(t *testing.T) {
	s := &sessionSpool{dir: t.TempDir() + "/missing"}
	big := strings.Repeat("x", memSpoolMax+1)
	if n, err := s.Write([]byte(big)); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v; want all taken", n, err)
	}
	if s.err == nil {
		t.Fatal("no error remembered")
	}
	s.reset()
	if s.err != nil || s.n != 0 {
		t.Errorf("after reset: err %v, n %d", s.err, s.n)
	}
}
