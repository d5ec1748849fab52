package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gw/lib/envelope"
)

func newQueue(t *testing.T) *Queue {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "queue")
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	q, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func env(rcpts ...string) envelope.Envelope {
	return envelope.Envelope{Sender: "alice@example.org", Recipients: rcpts}
}

// inject streams body through a MessageWriter, as gw-queue does.
func inject(t *testing.T, q *Queue, body []byte, e envelope.Envelope) ID {
	t.Helper()
	w, err := q.NewMessage(1000, 42)
	if err != nil {
		t.Fatal(err)
	}
	for len(body) > 0 { // odd-sized writes cross chunk boundaries
		n := 7000
		if n > len(body) {
			n = len(body)
		}
		if _, err := w.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	if err := w.Commit(e); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func readBody(t *testing.T, q *Queue, m *Message) []byte {
	t.Helper()
	rc, err := q.OpenBody(m)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading body of %s: %v", m.ID, err)
	}
	return b
}

func TestIDText(t *testing.T) {
	for _, id := range []ID{0, 1, 0x669a1b2c3d4e5, 1<<52 - 1} {
		s := id.String()
		back, err := ParseID(s)
		if err != nil || back != id || len(s) != idDigits {
			t.Errorf("ParseID(%q) = %v, %v; want %v", s, back, err, id)
		}
	}
	for _, bad := range []string{"", "123", "0669A1B2C3D4E", "0669a1b2c3d4g", "00669a1b2c3d4e"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded, want an error", bad)
		}
	}
}

func TestClockUniqueAcrossOpeners(t *testing.T) {
	q := newQueue(t)
	q2, err := Open(q.Dir) // a second process maps the same counter
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	var mu sync.Mutex
	seen := make(map[ID]bool)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			src := q
			if g%2 == 1 {
				src = q2
			}
			last := ID(0)
			for i := 0; i < 2000; i++ {
				id := src.NewID()
				if id <= last {
					t.Errorf("ID went backwards: %v after %v", id, last)
				}
				last = id
				mu.Lock()
				if seen[id] {
					t.Errorf("ID %v handed out twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	// A clock far ahead (as after the system clock stepped back) still
	// yields larger IDs.
	ahead := ID(time.Now().Add(time.Hour).UnixMicro())
	q.clock.Seed(ahead)
	if id := q2.NewID(); id <= ahead {
		t.Errorf("after Seed(%v) NewID() = %v", ahead, id)
	}
}

func TestInjectAndSnapshot(t *testing.T) {
	q := newQueue(t)
	sizes := []int{0, 1, bodyChunk - 1, bodyChunk, bodyChunk + 1, 300 << 10}
	bodies := make(map[ID][]byte)
	for i, n := range sizes {
		body := make([]byte, n)
		rand.New(rand.NewSource(int64(i))).Read(body)
		id := inject(t, q, body, env(fmt.Sprintf("r%d@example.net", i), "x@example.com"))
		bodies[id] = body
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != len(sizes) || len(snap.Problems) != 0 || snap.InProgress != 0 {
		t.Fatalf("snapshot: %d messages, problems %v, in progress %d; want %d, none, 0",
			len(snap.Messages), snap.Problems, snap.InProgress, len(sizes))
	}
	for _, m := range snap.Messages {
		want := bodies[m.ID]
		if m.Size != int64(len(want)) || m.Sender != "alice@example.org" || len(m.Recipients) != 2 {
			t.Errorf("message %s: size %d sender %q rcpts %v", m.ID, m.Size, m.Sender, m.Recipients)
		}
		if got := readBody(t, q, m); !bytes.Equal(got, want) {
			t.Errorf("message %s: body of %d bytes differs from the %d injected", m.ID, len(got), len(want))
		}
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	q := newQueue(t)
	w, err := q.NewMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\n\nhalf a message"))
	w.Abort()
	ents, _ := os.ReadDir(q.path(dirSeg))
	if len(ents) != 0 {
		t.Errorf("after Abort seg/ holds %d files", len(ents))
	}
}

func TestUncommittedIsInProgressNotListed(t *testing.T) {
	q := newQueue(t)
	w, err := q.NewMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	w.Write(bytes.Repeat([]byte("x"), 200<<10)) // some chunks reach the file
	w.bw.Flush()
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 0 || snap.InProgress != 1 {
		t.Errorf("snapshot during an injection: %d messages, %d in progress; want 0, 1", len(snap.Messages), snap.InProgress)
	}
}

// TestTornSegmentNeverYieldsPartialMessage cuts a segment of three
// messages at every length and flips bytes: a reader lists exactly the
// messages wholly before the cut and never one that is damaged.
func TestTornSegmentNeverYieldsPartialMessage(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	var ends []int64
	for i := 0; i < 3; i++ {
		in := c.NewIncoming(0, 0)
		fmt.Fprintf(in, "Subject: %d\n\n%s", i, bytes.Repeat([]byte("b"), 100*i))
		if err := c.Commit(in, env("bob@example.net")); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	names, _, _ := q.segmentNames()
	whole, err := os.ReadFile(q.path(dirSeg, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	ReadSegment(bytes.NewReader(whole), func(r Record) error {
		if r.Kind == kindMessage {
			ends = append(ends, r.Offset+r.Length)
		}
		return nil
	})
	if len(ends) != 3 {
		t.Fatalf("found %d messages in the segment, want 3", len(ends))
	}
	for cut := 0; cut < len(whole); cut++ {
		var n int
		_, _, err := ReadSegment(bytes.NewReader(whole[:cut]), func(r Record) error {
			if r.Kind == kindMessage {
				n++
			}
			return nil
		})
		want := 0
		for _, e := range ends {
			if int64(cut) >= e {
				want++
			}
		}
		if err != nil || n != want {
			t.Fatalf("cut at %d: %d messages (err %v), want %d", cut, n, err, want)
		}
	}
	for pos := len(segMagic); pos < len(whole); pos++ {
		damaged := bytes.Clone(whole)
		damaged[pos] ^= 0x20
		var n int
		_, p, _ := ReadSegment(bytes.NewReader(damaged), func(r Record) error {
			if r.Kind == kindMessage && r.Offset+r.Length > int64(pos) {
				t.Fatalf("byte %d flipped: message record %d..%d still accepted", pos, r.Offset, r.Offset+r.Length)
			}
			n++
			return nil
		})
		if p == nil {
			t.Fatalf("byte %d flipped: no problem reported", pos)
		}
	}
}

func TestCommitterConcurrent(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	const workers, each = 16, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := make(map[ID]string)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				in := c.NewIncoming(0, uint32(w))
				body := fmt.Sprintf("Subject: %d/%d\n\n%s", w, i, bytes.Repeat([]byte{'a' + byte(i%26)}, i*37))
				in.Write([]byte(body))
				if err := c.Commit(in, env(fmt.Sprintf("w%d@example.net", w))); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[in.ID()] = body
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != workers*each {
		t.Fatalf("%d messages listed, want %d", len(snap.Messages), workers*each)
	}
	for _, m := range snap.Messages {
		if got := string(readBody(t, q, m)); got != want[m.ID] {
			t.Fatalf("message %s body %q, want %q", m.ID, got, want[m.ID])
		}
	}
	c.Close()
	snap2, _ := q.Snapshot()
	if len(snap2.Messages) != workers*each || len(snap2.Problems) != 0 {
		t.Errorf("after Close: %d messages, problems %v", len(snap2.Messages), snap2.Problems)
	}
}

func TestRunnerLifecycle(t *testing.T) {
	q := newQueue(t)
	a := inject(t, q, []byte("Subject: a\n\nA\n"), env("one@example.net", "two@example.net", "three@example.net"))
	b := inject(t, q, []byte("Subject: b\n\nB\n"), env("four@example.net"))
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.OpenRunner(); !errors.Is(err, ErrRunnerActive) {
		t.Fatalf("second OpenRunner: %v, want ErrRunnerActive", err)
	}
	if got := r.Messages(); len(got) != 2 {
		t.Fatalf("runner sees %d messages, want 2", len(got))
	}
	if snap, _ := q.Snapshot(); !snap.Messages[0].Picked || !snap.Messages[1].Picked {
		t.Errorf("messages queued before the runner started are not marked picked up")
	}
	c := inject(t, q, []byte("Subject: c\n\nC\n"), env("five@example.net"))
	select {
	case <-r.Wake():
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after an injection")
	}
	fresh, err := r.Refresh()
	if err != nil || len(fresh) != 1 || fresh[0].ID != c {
		t.Fatalf("Refresh() = %v, %v; want message %s", fresh, err, c)
	}
	if _, err := r.Claim(a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Claim(a); !errors.Is(err, ErrClaimed) {
		t.Errorf("second Claim: %v, want ErrClaimed", err)
	}
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	must(t, r.Delivered(a, 0))
	must(t, r.Failed(a, 1, TextOutcome("550 5.1.1 no such user", Failed)))
	must(t, r.Deferred(a, 2, next, Outcome{Source: FromReply, Code: 421, Text: "4.7.0 try later", Status: "4.7.0", Host: "mx.example", Addr: "192.0.2.1:25", Stage: "RCPT TO"}))
	r.Unclaim(a)
	must(t, r.Hold(b))
	if _, err := r.Claim(b); !errors.Is(err, ErrHeld) {
		t.Errorf("Claim of a held message: %v, want ErrHeld", err)
	}
	must(t, r.Remove(c))
	must(t, r.Sync())

	// A lock-free reader sees the same states.
	check := func(when string) {
		snap, err := q.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Messages) != 2 {
			t.Fatalf("%s: %d messages listed, want 2", when, len(snap.Messages))
		}
		ma, mb := snap.Messages[0], snap.Messages[1]
		got := fmt.Sprintf("%v/%d %v/%d %v/%d/%q/%v held=%v", ma.Recipients[0].State, ma.Recipients[0].Attempts,
			ma.Recipients[1].State, ma.Recipients[1].Attempts, ma.Recipients[2].State, ma.Recipients[2].Attempts,
			ma.Recipients[2].LastError(), ma.Recipients[2].NextTry.Equal(next), mb.Held)
		want := `delivered/1 failed/1 pending/1/"mx.example[192.0.2.1]:25 said: 421 4.7.0 try later (in reply to RCPT TO) (#4.7.0)"/true held=true`
		if got != want {
			t.Errorf("%s: states %s, want %s", when, got, want)
		}
	}
	check("while the runner runs")
	must(t, r.Close())

	// A new runner rebuilds the same state from the files.
	r, err = q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	check("after a restart")
	must(t, r.Release(b))
	must(t, r.Delivered(b, 0))
	must(t, r.Remove(b))
	must(t, r.Delivered(a, 2))
	must(t, r.Remove(a))
	st, err := r.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if st.Segments != 3 {
		t.Errorf("Collect removed %d segments, want 3", st.Segments)
	}
	must(t, r.Close())
	if ents, _ := os.ReadDir(q.path(dirSeg)); len(ents) != 0 {
		t.Errorf("seg/ still holds %d files", len(ents))
	}
	snap, _ := q.Snapshot()
	if len(snap.Messages) != 0 {
		t.Errorf("%d messages listed after all were removed", len(snap.Messages))
	}
}

func TestCollectLeftoversByAge(t *testing.T) {
	q := newQueue(t)
	w, err := q.NewMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("never finished"))
	w.bw.Flush() // the injector stops here
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st, _ := r.Collect(); st.Leftovers != 0 {
		t.Fatalf("a young leftover was removed: %+v", st)
	}
	old := time.Now().Add(-Ossified - time.Minute)
	os.Chtimes(w.path, old, old)
	// As after a wall clock jump: old by its time, but its writer lives.
	if st, _ := r.Collect(); st.Leftovers != 0 {
		t.Fatalf("a file a live writer holds was removed: %+v", st)
	}
	w.f.Close() // the writer dies: the kernel drops its lock
	if st, _ := r.Collect(); st.Leftovers != 1 {
		t.Fatalf("an ossified leftover was not removed: %+v", st)
	}
	if _, err := os.Stat(w.path); !os.IsNotExist(err) {
		t.Errorf("leftover %s still there", w.path)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzReadSegment(f *testing.F) {
	var seg bytes.Buffer
	seg.WriteString(segMagic)
	e := encoder{w: &seg}
	e.begin(header{ID: 1, Arrival: time.Unix(1, 0)})
	e.chunk([]byte("Subject: x\n\nbody\n"))
	e.finish(env("b@example.net").Stored())
	seg.Write(sealRecord(1))
	f.Add(seg.Bytes())
	seg.Reset()
	seg.WriteString(segMagic)
	e = encoder{w: &seg}
	e.begin(header{ID: 2, Arrival: time.Unix(1, 0)})
	e.chunk([]byte("Subject: y\n\nbody\n"))
	e.finish([]byte("Fa@example.org\x00DRET=HDRS ENVID=x\x00Tb@example.net\x00NNOTIFY=NEVER\x00"))
	f.Add(seg.Bytes())
	f.Add([]byte(segMagic + "C\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"))
	f.Add([]byte("gwqseg1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		end, p, err := ReadSegment(bytes.NewReader(data), func(r Record) error {
			if r.Offset+r.Length > int64(len(data)) {
				t.Fatalf("record %d..%d beyond the input's %d bytes", r.Offset, r.Offset+r.Length, len(data))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read error from memory: %v", err)
		}
		if end > int64(len(data)) || p == nil && end != int64(len(data)) {
			t.Fatalf("end %d, problem %v, for %d bytes", end, p, len(data))
		}
	})
}

func FuzzReadJournal(f *testing.F) {
	b := []byte(jnlMagic)
	b = jrec{Kind: jRecipient, ID: 5, Index: 1, State: Failed, Attempts: 3, Next: 99, Out: TextOutcome("550 no", Failed)}.encode(b)
	b = jrec{Kind: jOutcome, ID: 5, Index: 2, State: Pending, Attempts: 1, Next: 99, Out: Outcome{Source: FromReply,
		Code: 450, Status: "4.2.0", Text: "4.2.0 busy", Host: "mx", Addr: "[::1]:25", Stage: "RCPT TO", DotSent: true}}.encode(b)
	b = jrec{Kind: jRemoved, ID: 5}.encode(b)
	f.Add(b)
	f.Add(jrec{Kind: jDot, ID: 6, Index: 2}.encode([]byte(jnlMagic)))
	f.Add([]byte(jnlMagic + "\x00\x00\x00\x09"))
	f.Fuzz(func(t *testing.T, data []byte) {
		readJournal(bytes.NewReader(data), func(r jrec) {
			if r.Kind == jOutcome && r.State >= stateCount {
				t.Fatalf("accepted state %d", r.State)
			}
			if again, err := decodeJrec(r.encode(nil)[4 : len(r.encode(nil))-4]); err != nil || again != r {
				t.Fatalf("record %+v does not survive encoding: %+v, %v", r, again, err)
			}
		})
	})
}

// TestRunnerSurvivesFailedFlush: after a journal flush failed, the file is
// never trusted again, and the runner restates its state in a new one.
func TestRunnerSurvivesFailedFlush(t *testing.T) {
	q := newQueue(t)
	id := inject(t, q, []byte("Subject: x\n\n"), env("a@example.net", "b@example.net"))
	r, err := q.OpenRunner()
	must(t, err)
	must(t, r.Delivered(id, 0))
	r.jw.broken = errors.New("fdatasync: input/output error") // as after an EIO
	old := r.jw
	if err := old.sync(old.queued); err == nil {
		t.Fatal("a broken journal file accepted a flush")
	}
	must(t, r.Sync())
	if r.jw == old {
		t.Fatal("Sync kept writing the broken journal file")
	}
	must(t, r.Failed(id, 1, TextOutcome("550 no", Failed)))
	must(t, r.Close())
	r, err = q.OpenRunner()
	must(t, err)
	defer r.Close()
	m, err := r.Message(id)
	must(t, err)
	if m.Recipients[0].State != Delivered || m.Recipients[1].State != Failed {
		t.Errorf("after restart: %v, %v; want delivered, failed", m.Recipients[0].State, m.Recipients[1].State)
	}
	if _, err := os.Stat(q.path(fileReserve)); err != nil {
		t.Errorf("no space reserve for the journal: %v", err)
	}
}

// TestRunnerReadsSharedSegmentOnlyWhenFlushed: the runner takes no message
// of gw-queued's open segment beyond what the committer announced as
// flushed, and never removes the segment while the committer holds it,
// even when the segment looks Ossified.
func TestRunnerReadsSharedSegmentOnlyWhenFlushed(t *testing.T) {
	q := newQueue(t)
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	c := q.NewCommitter()
	in := c.NewIncoming(0, 0)
	in.Write([]byte("Subject: 1\n\n"))
	must(t, c.Commit(in, env("a@example.net")))
	// A record written behind the committer's back is not announced.
	seg := c.seg
	unflushed := c.NewIncoming(0, 0)
	rec := net.Buffers(unflushed.finish(env("b@example.net")))
	rec.WriteTo(seg)
	deadline := time.Now().Add(5 * time.Second)
	var got []Message
	for len(got) == 0 && time.Now().Before(deadline) {
		fresh, err := r.Refresh()
		must(t, err)
		got = append(got, fresh...)
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 1 || got[0].Recipients[0].Address != "a@example.net" {
		t.Fatalf("Refresh took %v; want only the flushed message", got)
	}
	must(t, r.Remove(got[0].ID))
	old := time.Now().Add(-Ossified - time.Hour)
	os.Chtimes(q.path(dirSeg, c.segName), old, old)
	if st, err := r.Collect(); err != nil || st.Segments+st.Leftovers+st.SetAside != 0 {
		t.Fatalf("Collect removed the segment its live writer holds: %+v, %v", st, err)
	}
	c.Close() // sealed now: the runner reads it to the end
	fresh, err := r.Refresh()
	must(t, err)
	if len(fresh) != 1 || fresh[0].Recipients[0].Address != "b@example.net" {
		t.Fatalf("after the seal Refresh took %v; want the rest of the segment", fresh)
	}
}

// TestTakenIDNeverReplacesAMessage: should the shared clock go back (its
// page lost in a power cut while the system clock is behind), an ID drawn
// twice makes the second injection fail temporarily; the queued message
// stays as it was.
func TestTakenIDNeverReplacesAMessage(t *testing.T) {
	q := newQueue(t)
	first := inject(t, q, []byte("Subject: first\n\n"), env("a@example.net"))
	*q.clock.ctr = uint64(first) - 1 // the clock's page came back stale
	wallClock = func() time.Time { return first.Time().Add(-time.Hour) }
	defer func() { wallClock = time.Now }()
	w, err := q.NewMessage(0, 0)
	must(t, err)
	if w.ID() != first {
		t.Fatalf("the stale clock gave %s, want %s again", w.ID(), first)
	}
	w.Write([]byte("Subject: second\n\n"))
	err = w.Commit(env("b@example.net"))
	var ie *InjectError
	if !errors.As(err, &ie) || ie.Step != StepCreate {
		t.Fatalf("commit under a taken ID: %v, want a create error", err)
	}
	snap, err := q.Snapshot()
	must(t, err)
	if len(snap.Messages) != 1 || snap.Messages[0].Recipients[0].Address != "a@example.net" {
		t.Fatalf("after the clash the queue holds %v", snap.Messages)
	}
	if id := q.NewID(); id <= first {
		t.Errorf("the clock was not raised past the taken ID: %s", id)
	}
}

// TestRestartedRunnerKeepsStateOfLiveSegment: messages of gw-queued's open
// segment that a runner removed stay removed after the runner restarts,
// before and after the committer announces more.
func TestRestartedRunnerKeepsStateOfLiveSegment(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	defer c.Close()
	commit := func(rcpt string) {
		in := c.NewIncoming(0, 0)
		in.Write([]byte("Subject: x\n\n"))
		must(t, c.Commit(in, env(rcpt)))
	}
	commit("a@example.net")
	r, err := q.OpenRunner()
	must(t, err)
	for _, m := range r.Messages() {
		must(t, r.Remove(m.ID))
	}
	must(t, r.Close())
	r, err = q.OpenRunner()
	must(t, err)
	defer r.Close()
	commit("b@example.net") // the committer announces a longer flushed length
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	for len(got) == 0 && time.Now().Before(deadline) {
		fresh, err := r.Refresh()
		must(t, err)
		for _, m := range fresh {
			got = append(got, m.Recipients[0].Address)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 1 || got[0] != "b@example.net" || len(r.Messages()) != 1 {
		t.Fatalf("after a restart the runner took %v (holds %d); want only b@example.net", got, len(r.Messages()))
	}
}

// TestCommitterSeedsFromMessagesInSharedSegments: a shared segment holds
// IDs above its own name (drawn after it was opened). Should the clock's
// page be lost while the system clock is behind, a new committer still
// draws IDs above every message in the queue, not only above the names.
func TestCommitterSeedsFromMessagesInSharedSegments(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	var last ID
	for i := 0; i < 3; i++ {
		in := c.NewIncoming(0, 0)
		in.Write([]byte("Subject: x\n\n"))
		must(t, c.Commit(in, env("a@example.net")))
		last = in.ID()
	}
	c.Close()
	names, _, _ := q.segmentNames()
	if len(names) != 1 {
		t.Fatalf("segments %v, want one shared segment", names)
	}
	if name, _ := ParseID(names[0]); name >= last {
		t.Fatalf("segment %s is not below its last message %s: the test shows nothing", name, last)
	}
	*q.clock.ctr = 0 // the clock's page lost
	wallClock = func() time.Time { return last.Time().Add(-time.Hour) }
	defer func() { wallClock = time.Now }()
	c2 := q.NewCommitter()
	defer c2.Close()
	if id := q.NewID(); id <= last {
		t.Errorf("after a lost clock a new committer drew %s, not above the queue's last message %s", id, last)
	}
}

// TestMessageWriterWriteSizes: a body written whole, in small pieces, or
// in pieces larger than a chunk after a few bytes (as gw-queued hands
// over a message that outgrew memory) is stored in the same chunks, so in
// segments of one length, and reads back the same.
func TestMessageWriterWriteSizes(t *testing.T) {
	q := newQueue(t)
	body := make([]byte, 5*bodyChunk+123)
	rand.New(rand.NewSource(7)).Read(body)
	splits := map[string][]int{
		"whole":              {len(body)},
		"small":              {7000},
		"a little, then big": {100, 3*bodyChunk + 5},
		"chunk by chunk":     {bodyChunk},
	}
	sizes := map[int64]string{}
	for name, pattern := range splits {
		w, err := q.NewMessage(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for rest, i := body, 0; len(rest) > 0; i++ {
			n := min(pattern[min(i, len(pattern)-1)], len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Commit(env("r@example.net")); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(q.path(dirSeg, w.ID().String()))
		if err != nil {
			t.Fatal(err)
		}
		sizes[st.Size()] += name + " "
	}
	if len(sizes) != 1 {
		t.Errorf("segment sizes differ with the writes: %v", sizes)
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		if got := readBody(t, q, m); !bytes.Equal(got, body) {
			t.Errorf("message %s: %d bytes read back, differing from the %d written", m.ID, len(got), len(body))
		}
	}
}

// TestIncomingReadChunk: a body read into an Incoming chunk by chunk
// (ReadChunk, as gw-queued does), across its blocks' edges and from a
// reader that returns little at a time, is stored as written whole, and
// Size still tells it after the commit gave the blocks back; a reader
// that ends early is io.ErrUnexpectedEOF.
func TestIncomingReadChunk(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	defer c.Close()
	body := make([]byte, 3*IncomingBlock+77)
	rand.New(rand.NewSource(3)).Read(body)
	in := c.NewIncoming(0, 0)
	in.Write(body[:10])
	rest := body[10:]
	for _, n := range []int{IncomingBlock - 10, 1, IncomingBlock + 5, 300} {
		if err := in.ReadChunk(iotestHalf{bytes.NewReader(rest[:n])}, n); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := in.ReadChunk(bytes.NewReader(rest), len(rest)); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(in, env("r@example.net")); err != nil {
		t.Fatal(err)
	}
	if in.Size() != int64(len(body)) {
		t.Errorf("Size after the commit is %d, want %d", in.Size(), len(body))
	}
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 1 || !bytes.Equal(readBody(t, q, snap.Messages[0]), body) {
		t.Errorf("the body read back differs from the one read in")
	}
	short := c.NewIncoming(0, 0)
	defer short.Release()
	if err := short.ReadChunk(bytes.NewReader(body[:100]), 200); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a reader short of the chunk: %v, want io.ErrUnexpectedEOF", err)
	}
}

// iotestHalf returns at most half of what is asked for (and one byte).
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

// TestScanCountsHops: the scan that finds a message counts its trace
// lines, across chunk boundaries and not past the header, for the
// runner and for a snapshot alike.
func TestScanCountsHops(t *testing.T) {
	q := newQueue(t)
	line := "Received: from a by b; " + string(bytes.Repeat([]byte("x"), 800)) + "\r\n"
	hdr := bytes.Repeat([]byte(line), 99) // about 80 KiB: over a 64 KiB chunk
	body := append(append(hdr, "Delivered-To: c@example.org\r\n\r\n"...), bytes.Repeat([]byte("Received: in the body\r\n"), 50)...)
	id := inject(t, q, body, env("bob@example.org"))
	plain := inject(t, q, []byte("Subject: none\r\n\r\nReceived: body\r\n"), env("bob@example.org"))
	snap, err := q.Snapshot()
	must(t, err)
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	for _, c := range []struct {
		id   ID
		hops int
	}{{id, 100}, {plain, 0}} {
		m, err := r.Message(c.id)
		must(t, err)
		if m.Hops != c.hops {
			t.Errorf("runner: message %s hops %d, want %d", c.id, m.Hops, c.hops)
		}
	}
	for _, m := range snap.Messages {
		if want := map[ID]int{id: 100, plain: 0}[m.ID]; m.Hops != want {
			t.Errorf("snapshot: message %s hops %d, want %d", m.ID, m.Hops, want)
		}
	}
}

// TestBodyReadsItsRecordOnly: a body read stops at its record's end as
// the scan measured it, the next message's record right behind it in the
// same segment; a body whose record is cut short there is corrupt.
func TestBodyReadsItsRecordOnly(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	defer c.Close()
	var ids []ID
	for _, body := range []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond\r\n"} {
		p := c.NewIncoming(1000, 42)
		p.Write([]byte(body))
		must(t, c.Commit(p, env("bob@example.org")))
		ids = append(ids, p.ID())
	}
	snap, err := q.Snapshot()
	must(t, err)
	if len(snap.Messages) != 2 || snap.Messages[0].Segment != snap.Messages[1].Segment {
		t.Fatalf("want two messages in one segment: %+v", snap.Messages)
	}
	first := snap.Messages[0]
	if first.Length <= 0 || first.Offset+first.Length != snap.Messages[1].Offset {
		t.Fatalf("first record at %d, %d bytes; the second at %d", first.Offset, first.Length, snap.Messages[1].Offset)
	}
	if got := readBody(t, q, first); !bytes.HasSuffix(got, []byte("first\r\n")) {
		t.Errorf("body %q", got)
	}
	short := *first
	short.Length-- // the checksum's last byte left out
	rc, err := q.OpenBody(&short)
	must(t, err)
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("record cut short: %v, want ErrCorrupt", err)
	}
}
