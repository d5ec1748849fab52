package inject

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/logline"
)

// syncBuffer is a log several sessions write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// serveLogged is serve with the server's log kept.
func serveLogged(t *testing.T) (string, *syncBuffer) {
	t.Helper()
	q := newQueue(t)
	sock := filepath.Join(t.TempDir(), "inject.sock")
	l, err := Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	c := q.NewCommitter()
	s := &Server{Queue: q, Committer: c, Log: logline.New(log), Program: "gw-queued"}
	done := make(chan struct{})
	go func() { s.Serve(l); c.Close(); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return sock, log
}

var sessionEnv = envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}}

// TestQueuedLineCarriesSession: a listener names its session before a
// message and gw-queued's queued line carries that sid beside the qid,
// for a message sent whole and one streamed; the next message, from no
// named session, has none.
func TestQueuedLineCarriesSession(t *testing.T) {
	sock, log := serveLogged(t)
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.Session("hop0wahlm62")
	r1, err := cl.InjectBytes([]byte("Subject: x\n\nx\n"), sessionEnv)
	if err != nil || r1.Code != 0 {
		t.Fatalf("whole: %+v %v", r1, err)
	}
	cl.Session("hop0wahlm63")
	if err := cl.WriteChunk(bytes.Repeat([]byte("y"), 1000)); err != nil {
		t.Fatal(err)
	}
	r2, err := cl.End([]byte("\n"), sessionEnv)
	if err != nil || r2.Code != 0 {
		t.Fatalf("streamed: %+v %v", r2, err)
	}
	r3, err := cl.InjectBytes([]byte("z\n"), sessionEnv)
	if err != nil || r3.Code != 0 {
		t.Fatalf("unnamed: %+v %v", r3, err)
	}
	// The server logs after its reply: wait for the third line.
	for i := 0; i < 500 && !strings.Contains(log.String(), "qid="+r3.QID); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	got := log.String()
	for _, want := range []string{"info queued qid=" + r1.QID + " sid=hop0wahlm62 ", "info queued qid=" + r2.QID + " sid=hop0wahlm63 "} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the log:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "info queued qid="+r3.QID+" size=") {
		t.Errorf("the unnamed message's line is not qid then size:\n%s", got)
	}
}

// TestSessionNotSentBad: a sid that is not letters and digits is never
// put on the wire: the message goes, its line has no sid.
func TestSessionNotSentBad(t *testing.T) {
	sock, log := serveLogged(t)
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.Session("x y=z\n")
	r, err := cl.InjectBytes([]byte("x\n"), sessionEnv)
	if err != nil || r.Code != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	for i := 0; i < 500 && !strings.Contains(log.String(), "qid="+r.QID); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := log.String(); !strings.Contains(got, "qid="+r.QID) || strings.Contains(got, "sid=") {
		t.Errorf("a bad sid reached the log:\n%s", got)
	}
}

// TestBadSessionFrameRefused: a client of version 3 whose session frame
// names no plain id (a control byte, a length over the bound) is refused
// with 91 before any of its message is read, and nothing is queued; a
// version 2 client that sends one has it taken for an oversized chunk.
func TestBadSessionFrameRefused(t *testing.T) {
	sock, log := serveLogged(t)
	for _, frame := range [][]byte{
		append(binary.BigEndian.AppendUint32(nil, sessionMark|3), 'a', '\n', 'b'),
		binary.BigEndian.AppendUint32(nil, sessionMark|200),
		binary.BigEndian.AppendUint32(nil, sessionMark),
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		h := hello(Version3)
		c.Write(h[:])
		var v [1]byte
		if _, err := io.ReadFull(c, v[:]); err != nil || v[0] != Version3 {
			t.Fatalf("hello: %v %v", v, err)
		}
		msg := append(append([]byte{}, frame...), 0, 0, 0, 2, 'h', '\n', 0, 0, 0, 0)
		c.Write(append(msg, sessionEnv.Wire()...))
		reply, _ := io.ReadAll(c)
		c.Close()
		if !bytes.Equal(reply, []byte{91}) {
			t.Errorf("frame %x: reply %v, want [91] and the end", frame, reply)
		}
	}
	for i := 0; i < 500 && strings.Count(log.String(), "warning refused code=91") < 3; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := log.String(); strings.Contains(got, "info queued") || strings.Count(got, "warning refused code=91") != 3 {
		t.Errorf("log:\n%s", got)
	}
}

// TestSessionFromEnv: the sid a listener puts in gw-queue's environment
// is taken only as letters and digits of a bounded length.
func TestSessionFromEnv(t *testing.T) {
	for v, want := range map[string]string{
		"hop0wahlm62":           "hop0wahlm62",
		"":                      "",
		"a b":                   "",
		"x\nfake=1":             "",
		strings.Repeat("a", 65): "",
		strings.Repeat("a", 64): strings.Repeat("a", 64),
	} {
		if got := SessionFromEnv(func(string) string { return v }); got != want {
			t.Errorf("SessionFromEnv(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestSessionMessageInDribbles: a client that sends its message a few
// bytes at a time, pausing between them (a listener on a loaded machine),
// and its next one after a pause between messages, gets both queued
// whole: the session's wait for a message ends with a read of what came,
// and the rest is read as it arrives. A client that then closes while
// idle ends its session.
func TestSessionMessageInDribbles(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	bodies := []string{"Subject: one\n\nfirst\n", "Subject: two\n\nsecond\n"}
	for _, body := range bodies {
		var msg []byte
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)))
		msg = append(msg, body...)
		msg = append(msg, 0, 0, 0, 0)
		msg = append(msg, sessionEnv.Wire()...)
		for len(msg) > 0 {
			n := min(3, len(msg))
			if _, err := c.Write(msg[:n]); err != nil {
				t.Fatal(err)
			}
			msg = msg[n:]
			time.Sleep(2 * time.Millisecond)
		}
		var reply [1]byte
		if _, err := io.ReadFull(c, reply[:]); err != nil || reply[0] != 0 {
			t.Fatalf("reply %v, %v; want 0", reply[0], err)
		}
		time.Sleep(20 * time.Millisecond) // idle between messages
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != len(bodies) {
		t.Fatalf("%d messages queued, want %d", len(snap.Messages), len(bodies))
	}
	for i, m := range snap.Messages {
		r, err := q.OpenBody(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !strings.HasSuffix(string(got), "\n"+bodies[i]) || !strings.HasPrefix(string(got), "Received: (gw-queued ") {
			t.Errorf("message %d reads %q (%v), want the trace line and %q", i, got, err, bodies[i])
		}
	}
	c.Close() // the session ends; serve's cleanup waits for it
}
