package queue

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"testing"
	"time"
)

// waitNoticed waits for r's trigger and reads what it announced, until
// RefreshNoticed has taken n new messages.
func waitNoticed(t *testing.T, r *Runner, n int) (got []Message, pulled bool) {
	t.Helper()
	deadline := time.After(10 * announceEvery)
	for len(got) < n {
		select {
		case <-r.Wake():
		case <-deadline:
			t.Fatalf("the runner took %d new messages on its wake-ups, want %d", len(got), n)
		}
		fresh, p, err := r.RefreshNoticed()
		must(t, err)
		got, pulled = append(got, fresh...), pulled || p
	}
	return got, pulled
}

// TestRefreshNoticedReadsTheAnnouncedSegment: a wake-up that only says how
// far gw-queued flushed its segment reads that segment on, and nothing
// else: a segment that appeared without a pull of the trigger is found at
// the next pull ("!"), which RefreshNoticed reports.
func TestRefreshNoticedReadsTheAnnouncedSegment(t *testing.T) {
	q := newQueue(t)
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	c := q.NewCommitter()
	defer c.Close()
	commit := func(rcpt string) {
		in := c.NewIncoming(0, 0)
		in.Write([]byte("Subject: " + rcpt + "\n\nhi\n"))
		must(t, c.Commit(in, env(rcpt)))
	}
	commit("a@example.net")
	if got, _ := waitNoticed(t, r, 1); got[0].Recipients[0].Address != "a@example.net" {
		t.Fatalf("first wake-up took %v", got)
	}

	// A segment made elsewhere and moved in, no trigger pulled.
	other := newQueue(t)
	id := inject(t, other, []byte("Subject: quiet\n\n"), env("quiet@example.net"))
	b, err := os.ReadFile(other.path(dirSeg, id.String()))
	must(t, err)
	must(t, os.WriteFile(q.path(dirSeg, id.String()), b, 0o640))

	commit("b@example.net")
	got, pulled := waitNoticed(t, r, 1)
	if len(got) != 1 || got[0].Recipients[0].Address != "b@example.net" || pulled {
		t.Fatalf("a flushed-length notice took %v (pulled %v); want b@example.net alone, no pull", got, pulled)
	}

	q.Pull()
	got, pulled = waitNoticed(t, r, 1)
	if len(got) != 1 || got[0].ID != id || !pulled {
		t.Fatalf("a pull took %v (pulled %v); want the quiet segment's message, pulled", got, pulled)
	}
}

// TestBodyOutlivesTheRunnersHold: a body read from the segment the runner
// holds open stays whole when the runner lets the file go meanwhile (the
// segment sealed, then removed), and reads the same from a runner that
// holds no file.
func TestBodyOutlivesTheRunnersHold(t *testing.T) {
	q := newQueue(t)
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	c := q.NewCommitter()
	in := c.NewIncoming(0, 0)
	want := []byte("Subject: held\n\n" + strings.Repeat("line of the body\n", 5000))
	in.Write(want)
	must(t, c.Commit(in, env("a@example.net")))
	got, _ := waitNoticed(t, r, 1)
	id := got[0].ID
	body, err := r.Body(id)
	must(t, err)
	head := make([]byte, 100)
	if _, err := io.ReadFull(body, head); err != nil {
		t.Fatal(err)
	}
	c.Close() // sealed: the runner reads the seal and lets its file go
	_, err = r.Refresh()
	must(t, err)
	must(t, r.Remove(id))
	if st, err := r.Collect(); err != nil || st.Segments != 1 {
		t.Fatalf("Collect: %+v, %v; want the finished segment removed", st, err)
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("reading on after the runner let the file go: %v", err)
	}
	must(t, body.Close())
	if b := append(head, rest...); !bytes.Equal(b, want) {
		t.Fatalf("body read %d bytes, want the %d stored", len(b), len(want))
	}
	if err := body.Close(); err == nil {
		t.Error("a second Close of a body succeeded")
	}
}

// TestRemoveDelivered: the delivery that holds a message's claim removes
// it with its last outcome only when every recipient is delivered (a
// failed one is owed a bounce first), and the removal is durable with
// the one Sync that follows.
func TestRemoveDelivered(t *testing.T) {
	q := newQueue(t)
	a := inject(t, q, []byte("Subject: a\n\nA\n"), env("one@example.net", "two@example.net"))
	b := inject(t, q, []byte("Subject: b\n\nB\n"), env("three@example.net"))
	r, err := q.OpenRunner()
	must(t, err)
	for _, id := range []ID{a, b} {
		if _, err := r.Claim(id); err != nil {
			t.Fatal(err)
		}
	}
	must(t, r.Delivered(a, 0))
	if r.RemoveDelivered(a) {
		t.Fatal("removed a message with a recipient pending")
	}
	must(t, r.Delivered(a, 1))
	must(t, r.Failed(b, 0, Outcome{Source: FromGW, Status: "5.1.1", Text: "no such user"}))
	if r.RemoveDelivered(b) {
		t.Fatal("removed a message whose failed recipient is owed a bounce")
	}
	if !r.RemoveDelivered(a) {
		t.Fatal("a claimed message, every recipient delivered, was not removed")
	}
	if r.RemoveDelivered(a) {
		t.Fatal("removed twice")
	}
	must(t, r.Sync())
	defer r.Close()
	snap, err := q.Snapshot() // what the journal file says, as gw-qstat reads it
	must(t, err)
	if len(snap.Messages) != 1 || snap.Messages[0].ID != b || snap.Messages[0].Recipients[0].State != Failed {
		t.Fatalf("after the Sync the queue holds %v; want %s alone, failed", snap.Messages, b)
	}
}

// FuzzFlushedNotices: whatever bytes come through the trigger, and however
// the reads cut them, the runner learns the same lengths, names only
// segments it has a length for as grown, and never sees a length shrink.
func FuzzFlushedNotices(f *testing.F) {
	f.Add([]byte("F 0669a1b2c3d4e 4096\n!"), 5)
	f.Add([]byte("!F 0669a1b2c3d4e 10\nF 0669a1b2c3d4e 9\n"), 21)
	f.Add([]byte("F ../../etc 12\nF 0669a1b2c3d4e -1\nF 0669a1b2c3d4e\n"), 3)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		var whole, split flushedNotices
		whole.feed(b)
		if cut < 0 || cut > len(b) {
			cut = len(b) / 2
		}
		split.feed(b[:cut])
		before := maps.Clone(split.lengths)
		split.feed(b[cut:])
		if !maps.Equal(whole.lengths, split.lengths) {
			t.Fatalf("lengths %v read whole, %v read in two", whole.lengths, split.lengths)
		}
		for name, l := range before {
			if split.lengths[name] < l {
				t.Fatalf("%s shrank from %d to %d", name, l, split.lengths[name])
			}
		}
		grown, _ := split.take()
		for _, name := range grown {
			if _, err := ParseID(name); err != nil || split.lengths[name] <= 0 {
				t.Fatalf("%q named as grown with length %d", name, split.lengths[name])
			}
		}
		if grown, pulled := split.take(); len(grown) != 0 || pulled {
			t.Fatalf("a second take found %v, %v", grown, pulled)
		}
	})
}

// TestRunnerLetsSealedSegmentsGo: as gw-queued seals one segment after
// another, the runner reading them on keeps open only the one still
// written, and every message is taken once.
func TestRunnerLetsSealedSegmentsGo(t *testing.T) {
	q := newQueue(t)
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	c := q.NewCommitter()
	c.MaxSegmentSize = 300 // a few messages a segment
	defer c.Close()
	const n = 12
	for i := range n {
		in := c.NewIncoming(0, 0)
		in.Write([]byte(fmt.Sprintf("Subject: %d\n\nbody\n", i)))
		must(t, c.Commit(in, env("a@example.net")))
		waitNoticed(t, r, 1)
	}
	r.mu.Lock()
	open := 0
	for _, rs := range r.segs {
		if rs.file != nil {
			open++
		}
	}
	segs := len(r.segs)
	r.mu.Unlock()
	if segs < 3 || open != 1 {
		t.Fatalf("after %d messages over %d segments the runner holds %d open, want 1", n, segs, open)
	}
	if got := len(r.Messages()); got != n {
		t.Fatalf("the runner took %d messages, want %d", got, n)
	}
}
