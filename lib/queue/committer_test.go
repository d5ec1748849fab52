package queue

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdFlush makes c behave as if a flush were under way, as a slow disk
// would, until the returned function ends it: callers that arrive meanwhile
// wait in line.
func holdFlush(t *testing.T, c *Committer) (end func()) {
	t.Helper()
	c.mu.Lock()
	if c.busy {
		c.mu.Unlock()
		t.Fatal("a flush is already under way")
	}
	c.busy = true
	c.mu.Unlock()
	return c.release
}

// waitInLine waits until n callers wait in c's line.
func waitInLine(t *testing.T, c *Committer, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers in line, want %d", got, n)
		}
	}
}

// commitAsync commits a message of its own on a goroutine and reports its
// outcome on the channel returned.
func commitAsync(c *Committer, i int) <-chan error {
	done := make(chan error, 1)
	go func() {
		in := c.NewIncoming(0, uint32(i))
		fmt.Fprintf(in, "Subject: %d\n\nbody %d\n", i, i)
		done <- c.Commit(in, env(fmt.Sprintf("r%d@example.net", i)))
	}()
	return done
}

// TestCommitterLoneMessageFlushesItself: with no flush under way, Commit
// writes and flushes the message before it returns, and the runner's
// FIFO carries the flushed length: the caller's own goroutine did it all.
func TestCommitterLoneMessageFlushesItself(t *testing.T) {
	q := newQueue(t)
	trig, err := os.OpenFile(q.path(fileTrig, ""), os.O_RDONLY|unix.O_NONBLOCK, 0)
	must(t, err)
	defer trig.Close()
	c := q.NewCommitter()
	defer c.Close()
	for i := 0; i < 3; i++ {
		in := c.NewIncoming(0, 0)
		fmt.Fprintf(in, "Subject: %d\n\n", i)
		must(t, c.Commit(in, env("a@example.net")))
		snap, err := q.Snapshot()
		must(t, err)
		if len(snap.Messages) != i+1 {
			t.Fatalf("after commit %d the queue lists %d messages", i+1, len(snap.Messages))
		}
		if heard := readTrigger(t, trig); strings.Count(heard, "F ") != 1 {
			t.Fatalf("commit %d told the runner %q, want one flushed notice", i+1, heard)
		}
	}
}

// TestCommitterGroupsWhatArrivesDuringAFlush: messages that arrive while a
// flush is under way are not answered by it; they wait, and the first of
// them then flushes them all at once: one flushed notice for the lot.
func TestCommitterGroupsWhatArrivesDuringAFlush(t *testing.T) {
	q := newQueue(t)
	trig, err := os.OpenFile(q.path(fileTrig, ""), os.O_RDONLY|unix.O_NONBLOCK, 0)
	must(t, err)
	defer trig.Close()
	c := q.NewCommitter()
	defer c.Close()

	end := holdFlush(t, c)
	const n = 8
	var outcomes []<-chan error
	for i := 0; i < n; i++ {
		outcomes = append(outcomes, commitAsync(c, i))
	}
	waitInLine(t, c, n)
	for i, o := range outcomes {
		select {
		case err := <-o:
			t.Fatalf("message %d answered (%v) before any flush covered it", i, err)
		default:
		}
	}
	if snap, err := q.Snapshot(); err != nil || len(snap.Messages) != 0 {
		t.Fatalf("before the flush the queue lists %d messages (%v), want none", len(snap.Messages), err)
	}

	end()
	for i, o := range outcomes {
		if err := <-o; err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	snap, err := q.Snapshot()
	must(t, err)
	if len(snap.Messages) != n {
		t.Fatalf("after the flush the queue lists %d messages, want %d", len(snap.Messages), n)
	}
	if heard := readTrigger(t, trig); strings.Count(heard, "F ") != 1 {
		t.Fatalf("the runner was told %q; want one flushed notice for the %d messages", heard, n)
	}
}

// TestCommitterCloseFlushesTheLine: Close waits for the messages already in
// line, which are committed, then seals; a message after it is refused
// and nothing of it is written.
func TestCommitterCloseFlushesTheLine(t *testing.T) {
	q := newQueue(t)
	c := q.NewCommitter()
	end := holdFlush(t, c)
	first, second := commitAsync(c, 1), commitAsync(c, 2)
	waitInLine(t, c, 2)
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		refusing := c.closed
		c.mu.Unlock()
		if refusing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not begin")
		}
	}
	select {
	case <-closed:
		t.Fatal("Close returned while messages waited in line")
	default:
	}
	end()
	must(t, <-first)
	must(t, <-second)
	<-closed

	in := c.NewIncoming(0, 0)
	in.Write([]byte("Subject: late\n\n"))
	if err := c.Commit(in, env("late@example.net")); err != ErrCommitterClosed {
		t.Fatalf("a commit after Close: %v, want ErrCommitterClosed", err)
	}
	names, _, err := q.segmentNames()
	must(t, err)
	if len(names) != 1 {
		t.Fatalf("segments %v, want one", names)
	}
	seg, err := q.scanSegment(names[0], 0, -1)
	must(t, err)
	if !seg.sealed || len(seg.messages) != 2 {
		t.Fatalf("the segment after Close: sealed %v, %d messages; want sealed with 2", seg.sealed, len(seg.messages))
	}
}
