package inject

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"gw/lib/logline"
)

// FuzzReadReply feeds a client whatever a server might answer, split
// into reads at any point: the reply is read without a panic, the code
// is its first byte, bytes past the reply's end are reported (the
// connection is then out of step) and never taken for part of it, and a
// queue id is only ever one that PlainQID accepts.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte{0}, byte(1), uint8(0))
	f.Add([]byte{0, 13, '0', '6', '6', '9', 'a', '1', 'b', '2', 'c', '3', 'd', '4', 'e'}, byte(2), uint8(0))
	f.Add([]byte{0, 13, '0', '6', '6', '9', 'a', '1', 'b', '2', 'c', '3', 'd', '4', 'e'}, byte(2), uint8(1))
	f.Add([]byte{53}, byte(2), uint8(0))
	f.Add([]byte{0, 5, 'a', '\r', '\n', 'b', 'c'}, byte(2), uint8(3))
	f.Add([]byte{0, 0}, byte(2), uint8(0))
	f.Add([]byte{0, 200, 'x'}, byte(2), uint8(1))
	f.Add([]byte{0, 1, 'a', 0}, byte(2), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, v byte, split uint8) {
		r := &splitReader{b: in, first: int(split)}
		code, qid, extra, err := readReply(r, v, make([]byte, maxReply))
		used := len(in) - len(r.b)
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
		if used < want || extra != (used > want) {
			t.Fatalf("read %d bytes of the reply %x (version %d, reply %d bytes), extra %v", used, in, v, want, extra)
		}
		if qid != "" && (!PlainQID(qid) || v < Version2 || qid != string(in[2:want])) {
			t.Fatalf("queue id %q accepted from %x (version %d)", qid, in, v)
		}
		if errors.Is(err, errBadQID) && qid != "" {
			t.Fatalf("a bad queue id kept: %q", qid)
		}
	})
}

// splitReader gives its bytes as a socket might: first bytes in the
// first read (all when 0), the rest in the next.
type splitReader struct {
	b     []byte
	first int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if r.first > 0 {
		n, r.first = min(n, r.first), 0
	}
	n = copy(p, r.b[:min(n, len(r.b))])
	r.b = r.b[n:]
	return n, nil
}

// FuzzServerStream sends a server whatever a client might: hellos, chunk
// headers of every length, envelopes cut anywhere. The server neither
// panics nor keeps a byte of its memory budget once the connection is
// over, and every reply of 0 stands for a message it listed.
func FuzzServerStream(f *testing.F) {
	msg := func(body string) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		b = append(b, body...)
		b = append(b, 0, 0, 0, 0)
		return append(b, "Fa@b.example\x00Tc@d.example\x00\x00"...)
	}
	f.Add(msg("Subject: x\n\nhi\n"))
	f.Add(append([]byte{0xff, 0xff, 0xff, 2}, msg("x")...))
	f.Add([]byte{0xff, 0xff, 0xff, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0})
	f.Add(append(msg("a"), msg("b")...))
	f.Add([]byte{0, 0x10, 0, 1, 'x'})
	f.Add([]byte{0, 0, 0, 0, 'X', 0, 0})
	// version 3: a session frame before a message, good and bad
	f.Add(append([]byte{0xff, 0xff, 0xff, 3, 0xff, 0xff, 0xfe, 2, 's', '1'}, msg("x")...))
	f.Add(append([]byte{0xff, 0xff, 0xff, 3, 0xff, 0xff, 0xfe, 2, 's', '\n'}, msg("x")...))
	f.Add(append([]byte{0xff, 0xff, 0xff, 2, 0xff, 0xff, 0xfe, 2, 's', '1'}, msg("x")...))
	f.Add([]byte{0xff, 0xff, 0xff, 3, 0xff, 0xff, 0xfe, 0xff})
	q := newQueue(f)
	sock := filepath.Join(f.TempDir(), "inject.sock")
	l, err := Listen(sock, 0o600)
	if err != nil {
		f.Fatal(err)
	}
	c := q.NewCommitter()
	s := &Server{Queue: q, Committer: c, Log: logline.New(io.Discard), Program: "gw-queued", Budget: 1 << 16}
	done := make(chan struct{})
	go func() { s.Serve(l); c.Close(); close(done) }()
	f.Cleanup(func() { l.Close(); <-done })
	f.Fuzz(func(t *testing.T, in []byte) {
		before, _ := q.Snapshot()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			conn.Write(in)
			conn.(*net.UnixConn).CloseWrite()
		}()
		replies, _ := io.ReadAll(conn)
		conn.Close()
		// The session is over once the server closed its end; its share
		// of the budget is given back by then or a moment after.
		for i := 0; s.held.Load() != 0 && i < 100; i++ {
			time.Sleep(time.Millisecond)
		}
		if n := s.held.Load(); n != 0 {
			t.Fatalf("%d bytes still held after the connection", n)
		}
		after, _ := q.Snapshot()
		if added := len(after.Messages) - len(before.Messages); added > len(replies) {
			t.Fatalf("%d messages listed for %d reply bytes %x", added, len(replies), replies)
		}
	})
}
