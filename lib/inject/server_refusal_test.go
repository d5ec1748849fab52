package inject

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/qq"
	"gw/lib/queue"
)

// TestServerRefusalMidMessageKeepsStep refuses a large message half way
// through its body (the queue cannot take it: here its segment cannot be
// created, on a full disk its writes fail) and checks that the server
// still reads the rest of it before answering. A server that answers at
// once and goes on reading the rest of the body as the next message would
// queue whatever that body spells, under an envelope the sender chose: a
// message smuggled into the queue.
func TestServerRefusalMidMessageKeepsStep(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	reply := func(what string) int {
		t.Helper()
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("%s: no reply: %v", what, err)
		}
		return int(b[0])
	}
	send := func(body []byte, chunk int, env envelope.Envelope) {
		var w bytes.Buffer
		for len(body) > 0 {
			n := min(chunk, len(body))
			w.Write(binary.BigEndian.AppendUint32(nil, uint32(n)))
			w.Write(body[:n])
			body = body[n:]
		}
		w.Write([]byte{0, 0, 0, 0})
		w.Write(env.Wire())
		go c.Write(w.Bytes()) // the server may stop reading: do not wait
	}
	env := envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}}

	// A first message opens the committer's shared segment.
	send([]byte("Subject: first\n\nhello\n"), 1<<16, env)
	if code := reply("first message"); code != qq.OK {
		t.Fatalf("first message: code %d", code)
	}

	// The queue can no longer create segments of their own (they are
	// written in tmp/); the shared one stays open.
	seg := filepath.Join(q.Dir, "tmp")
	if err := os.Rename(seg, seg+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// A body over queue.MaxIncoming in 64 KiB chunks: with the trace line
	// in front, the chunk that starts at MaxIncoming-64K is the one that
	// moves the message to a segment of its own, which fails. That chunk
	// spells a whole message to victim@example.net.
	const chunk = 1 << 16
	body := bytes.Repeat([]byte("a"), 2*queue.MaxIncoming)
	var forged bytes.Buffer
	forged.Write([]byte{0, 0, 0, 6})
	forged.WriteString("forged")
	forged.Write([]byte{0, 0, 0, 0})
	forged.Write(envelope.Envelope{Sender: "evil@example.org", Recipients: []string{"victim@example.net"}}.Wire())
	copy(body[queue.MaxIncoming-chunk:], forged.Bytes())
	send(body, chunk, env)
	if code := reply("large message"); code != qq.QueueTrouble {
		t.Fatalf("large message, segment not creatable: code %d, want %d", code, qq.QueueTrouble)
	}

	os.Remove(seg)
	if err := os.Rename(seg+".away", seg); err != nil {
		t.Fatal(err)
	}
	// The connection carries the next message, and its answer is its own.
	send([]byte("Subject: third\n\nhello\n"), 1<<16, env)
	if code := reply("third message"); code != qq.OK {
		t.Errorf("message after the refusal: code %d, want %d", code, qq.OK)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		if m.Sender != env.Sender {
			t.Errorf("queued a message from %s to %v that the client never sent", m.Sender, m.Recipients)
		}
	}
	if len(snap.Messages) != 2 || snap.InProgress != 0 {
		t.Errorf("%d messages queued, %d in progress; want 2, 0", len(snap.Messages), snap.InProgress)
	}
}
