package queue

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFresh refreshes r until it has taken n new messages, for at most a
// few of the committer's notices.
func waitFresh(t *testing.T, r *Runner, n int) []Message {
	t.Helper()
	var got []Message
	for deadline := time.Now().Add(5 * announceEvery); len(got) < n; {
		fresh, err := r.Refresh()
		must(t, err)
		got = append(got, fresh...)
		if time.Now().After(deadline) {
			t.Fatalf("the runner took %d new messages, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return got
}

// TestLoadLeavesAnUnflushedBatch: a runner starts while gw-queued has
// written a batch to its open segment and not yet flushed it. The runner
// takes the messages acknowledged before, leaves the batch, and never
// takes it once the flush fails and the batch is cut off; the next batch,
// flushed and announced, it takes.
func TestLoadLeavesAnUnflushedBatch(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	defer c.Close()
	commit := func(rcpt string) {
		in := c.NewIncoming(0, 0)
		in.Write([]byte("Subject: x\n\n"))
		must(t, c.Commit(in, env(rcpt)))
	}
	commit("seen@example.net")
	r, err := q.OpenRunner()
	must(t, err)
	if n := len(r.Messages()); n != 1 {
		t.Fatalf("a runner started after a commit holds %d messages, want it", n)
	}
	must(t, r.Close())

	// The batch under way: a whole record at the end of the segment,
	// written but not flushed (S2).
	names, _, err := q.segmentNames()
	must(t, err)
	path := q.path(dirSeg, names[0])
	st, err := os.Stat(path)
	must(t, err)
	var rec bytes.Buffer
	e := encoder{w: &rec}
	e.begin(header{ID: q.NewID(), Arrival: time.Now()})
	e.chunk([]byte("Subject: refused\n\n"))
	must(t, e.finish(env("refused@example.net").Stored()))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(rec.Bytes())
	must(t, err)

	r, err = q.OpenRunner()
	must(t, err)
	defer r.Close()
	if msgs := r.Messages(); len(msgs) != 1 || msgs[0].Recipients[0].Address != "seen@example.net" {
		t.Fatalf("at start the runner holds %v; want only the message acknowledged before", msgs)
	}
	// The flush fails: gw-queued cuts the batch off and answers 451.
	must(t, f.Truncate(st.Size()))
	f.Close()
	time.Sleep(2 * announceEvery)
	fresh, err := r.Refresh()
	must(t, err)
	if len(fresh) != 0 {
		t.Fatalf("after the failed flush the runner took %v", fresh)
	}
	commit("next@example.net")
	got := waitFresh(t, r, 1)
	if len(got) != 1 || got[0].Recipients[0].Address != "next@example.net" || len(r.Messages()) != 2 {
		t.Fatalf("after the next batch the runner took %v and holds %d; want next@ and 2", got, len(r.Messages()))
	}
}

// TestIdleCommitterSealsAndFallsSilent: gw-queued repeats its flushed
// notice while a segment is open, for a runner that may start; once the
// segment has taken nothing for SealIdle it is sealed, the runner told,
// and from then on the committer writes nothing to the trigger: an idle
// gw-queued has no timer to wake it.
func TestIdleCommitterSealsAndFallsSilent(t *testing.T) {
	q := newQueue(t)
	// The test stands where the runner would: the reading end of the FIFO.
	trig, err := os.OpenFile(q.path(fileTrig, ""), os.O_RDONLY|unix.O_NONBLOCK, 0)
	must(t, err)
	defer trig.Close()
	c := q.NewCommitter()
	c.SealIdle = 3 * announceEvery
	defer c.Close()

	in := c.NewIncoming(0, 0)
	in.Write([]byte("Subject: idle\n\n"))
	must(t, c.Commit(in, env("a@example.net")))
	names, _, err := q.segmentNames()
	must(t, err)
	if len(names) != 1 {
		t.Fatalf("segments after one commit: %v", names)
	}
	path := q.path(dirSeg, names[0])
	heard := readTrigger(t, trig)
	if !strings.HasPrefix(heard, "F "+names[0]+" ") {
		t.Fatalf("after the commit the trigger carried %q, want the flushed notice", heard)
	}

	for deadline := time.Now().Add(20 * announceEvery); writerAlive(path); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the segment is still open %v after its only message", 20*announceEvery)
		}
	}
	seg, err := q.scanSegment(names[0], 0, -1)
	must(t, err)
	if !seg.sealed || len(seg.messages) != 1 {
		t.Fatalf("the idle segment: sealed %v, %d messages; want sealed with its message", seg.sealed, len(seg.messages))
	}
	heard = readTrigger(t, trig)
	if !strings.Contains(heard, "F "+names[0]+" ") || !strings.HasSuffix(heard, "!") {
		t.Fatalf("while open and at the seal the trigger carried %q; want the repeated notice, then a wake-up", heard)
	}

	time.Sleep(3 * announceEvery)
	if heard := readTrigger(t, trig); heard != "" {
		t.Fatalf("with no segment open the committer still wrote %q", heard)
	}
}

// readTrigger returns what the FIFO holds now.
func readTrigger(t *testing.T, f *os.File) string {
	t.Helper()
	var b bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(int(f.Fd()), buf)
		if n > 0 {
			b.Write(buf[:n])
			continue
		}
		if err != nil && err != unix.EAGAIN {
			t.Fatalf("read the trigger: %v", err)
		}
		return b.String()
	}
}
