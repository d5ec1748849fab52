package queue

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A writer holds a shared flock on every file it is still writing: a
// segment of its own in tmp/, or gw-queued's open shared segment. The
// kernel drops the lock when the writer dies. The runner removes an
// unfinished file only when no writer holds it, whatever the clocks say
// (a wall clock that jumps forward makes any file look Ossified), and
// reads a shared segment that a live writer holds only up to the length
// that writer announced as flushed (see flushedNotices).

// holdWriting marks f as being written, for as long as f is open.
func holdWriting(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return nil
}

// writerAlive reports whether a live process still writes path. A file
// that cannot be opened, or is a link, has no writer.
func writerAlive(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == unix.EWOULDBLOCK
}

// The trigger FIFO carries two kinds of notices, each one write of at most
// PIPE_BUF bytes so that writers never interleave: "!" wakes the runner,
// and "F name length\n" says that shared segment name is flushed up to
// length. Lengths only grow, so a notice lost to a full FIFO is made good
// by the next one; gw-queued repeats its last announceEvery after it
// while the segment is open.
const noticeFlushed = 'F'

func flushedNotice(name string, length int64) []byte {
	return []byte(fmt.Sprintf("%c %s %d\n", noticeFlushed, name, length))
}

// flushedNotices is the runner's record of the announced lengths.
type flushedNotices struct {
	mu      sync.Mutex
	lengths map[string]int64
	partial []byte // a notice split across two reads
	// What came since the last take: the segments whose announced length
	// grew, and whether anything else pulled the trigger ("!": a new
	// segment of gw-queue's, a seal, a gw-qctl request).
	grown  map[string]bool
	pulled bool
}

// feed takes what was read from the FIFO and reports whether it held a
// wake-up: a "!", an unknown byte, or a length that grew.
func (n *flushedNotices) feed(b []byte) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lengths == nil {
		n.lengths = make(map[string]int64)
	}
	woke := false
	for _, c := range b {
		if len(n.partial) == 0 && c != noticeFlushed {
			woke = true // "!" or a byte from a writer gw does not know
			n.pulled = true
			continue
		}
		n.partial = append(n.partial, c)
		if c != '\n' && len(n.partial) < 256 {
			continue
		}
		f := strings.Fields(string(n.partial))
		n.partial = n.partial[:0]
		if len(f) != 3 {
			continue
		}
		if _, err := ParseID(f[1]); err != nil {
			continue
		}
		if l, err := strconv.ParseInt(f[2], 10, 64); err == nil && l > n.lengths[f[1]] {
			n.lengths[f[1]] = l
			if n.grown == nil {
				n.grown = make(map[string]bool)
			}
			n.grown[f[1]] = true
			woke = true // a repeated notice is no news: no refresh for it
		}
	}
	return woke
}

// take returns what came since the last take: the segments whose
// announced length grew, and whether the trigger was pulled otherwise.
func (n *flushedNotices) take() (grown []string, pulled bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.grown {
		grown = append(grown, name)
	}
	clear(n.grown)
	pulled, n.pulled = n.pulled, false
	return grown, pulled
}

// flushed returns the announced length of segment name, 0 if none.
func (n *flushedNotices) flushed(name string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lengths[name]
}

// forget drops what is known of a removed segment.
func (n *flushedNotices) forget(name string) {
	n.mu.Lock()
	delete(n.lengths, name)
	n.mu.Unlock()
}
