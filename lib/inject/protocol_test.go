package inject

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/queue"
)

// TestClientLearnsQID: a client of this build asks for its newest version and
// hears the queue id of each message, the id the queue lists it under.
func TestClientLearnsQID(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Version() != Newest {
		t.Fatalf("version %d agreed, want %d", cl.Version(), Newest)
	}
	var ids []string
	for _, size := range []int{10, queue.MaxIncoming + 10} { // committed together, and alone
		r, err := cl.Send(strings.NewReader(strings.Repeat("x", size)), func() envelope.Envelope {
			return envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}}
		})
		if err != nil || r.Code != 0 || len(r.QID) != 13 {
			t.Fatalf("%d bytes: reply %+v, %v; want 0 and a 13-digit id", size, r, err)
		}
		ids = append(ids, r.QID)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range snap.Messages {
		listed = append(listed, m.ID.String())
	}
	if strings.Join(listed, " ") != strings.Join(ids, " ") {
		t.Errorf("replies named %q, the queue lists %q", ids, listed)
	}
}

// TestVersion1ClientUnchanged: a client that never says hello (a listener
// of an older build, still running across gw-queued's upgrade) gets the
// one-byte reply it knows, message after message.
func TestVersion1ClientUnchanged(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var msg []byte
	for i := 0; i < 2; i++ {
		msg = append(msg, 0, 0, 0, 2, 'h', '\n', 0, 0, 0, 0)
		msg = append(msg, envelope.Envelope{Sender: "a@b", Recipients: []string{"c@d"}}.Wire()...)
	}
	c.Write(msg)
	got := make([]byte, 3)
	n, _ := io.ReadAtLeast(c, got, 2)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	m, _ := c.Read(got[n:])
	if n+m != 2 || got[0] != 0 || got[1] != 0 {
		t.Errorf("replies %q, want two bytes of 0", got[:n+m])
	}
}

// TestClientOfOldServer: a server of version 1 refuses the hello as an
// oversized chunk and closes; the client dials again and speaks
// version 1. Played here by a server that does just that.
func TestClientOfOldServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "old.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [4]byte
				io.ReadFull(c, hdr[:])
				if binary.BigEndian.Uint32(hdr[:]) > maxSocketChunk {
					c.Write([]byte{54})
					return
				}
				c.Write([]byte{0}) // a version 1 server's answer to any message
			}()
		}
	}()
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Version() != Version1 {
		t.Errorf("version %d with an old server, want 1", cl.Version())
	}
}

// TestReplyPastItsEnd: a server that sends bytes after a reply, which
// nobody asked for, has its reply counted, and the connection is stale
// from then on: the pool carries no further message on it.
func TestReplyPastItsEnd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "chatty.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var hdr [4]byte
		io.ReadFull(c, hdr[:])
		c.Write([]byte{Version2}) // the hello answered
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			if n := binary.BigEndian.Uint32(hdr[:]); n > 0 {
				io.CopyN(io.Discard, c, int64(n))
				continue
			}
			env := make([]byte, 0, 64)
			for b := [1]byte{}; !bytes.HasSuffix(env, []byte{0, 0}); env = append(env, b[0]) {
				if _, err := c.Read(b[:]); err != nil {
					return
				}
			}
			c.Write([]byte{0, 3, 'a', 'b', 'c', 'X'}) // queued as abc, and one byte more
		}
	}()
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Stale() {
		t.Fatal("a fresh connection is stale")
	}
	r, err := cl.End([]byte("Subject: x\n\nhi\n"), envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}})
	if err != nil || r.Code != 0 || r.QID != "abc" {
		t.Fatalf("reply %+v, %v; want 0 and abc", r, err)
	}
	if !cl.Stale() {
		t.Error("a connection with a byte past the reply is not stale")
	}
}

// TestBudgetBoundsHeldBytes: with many messages under way at once, the
// bytes held in memory never pass the budget; the messages that find it
// spent go to segments of their own, and every message is queued whole.
func TestBudgetBoundsHeldBytes(t *testing.T) {
	q := newQueue(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "inject.sock")
	l, err := Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c := q.NewCommitter()
	const budget = 1 << 20
	s := &Server{Queue: q, Committer: c, Log: logline.New(io.Discard), Program: "gw-queued", Budget: budget}
	done := make(chan struct{})
	go func() { s.Serve(l); c.Close(); close(done) }()
	defer func() { l.Close(); <-done }()

	stop := make(chan struct{})
	var peak int64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			peak = max(peak, s.held.Load())
			time.Sleep(50 * time.Microsecond)
		}
	}()
	const clients = 24
	body := bytes.Repeat([]byte("0123456789abcde\n"), 200<<10/16) // 200 KiB
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl, err := Dial(sock)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			code, err := cl.Inject(bytes.NewReader(body), envelope.Envelope{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("r%d@example.net", i)}})
			if code != 0 || err != nil {
				t.Errorf("client %d: %d %v", i, code, err)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if peak > budget {
		t.Errorf("%d bytes held at the peak, over the budget of %d", peak, budget)
	}
	if s.held.Load() != 0 {
		t.Errorf("%d bytes still counted as held after every commit", s.held.Load())
	}
	snap, _ := q.Snapshot()
	if len(snap.Messages) != clients {
		t.Fatalf("%d messages queued, want %d", len(snap.Messages), clients)
	}
	for _, m := range snap.Messages {
		rc, err := q.OpenBody(m)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if _, rest, _ := bytes.Cut(got, []byte("\n")); !bytes.Equal(rest, body) {
			t.Errorf("message %s: %d bytes stored, want the trace and %d", m.ID, len(got), len(body))
		}
	}
}
