package queue

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ID names a message for its whole life in one queue: a count of
// microseconds since the Unix epoch, drawn from the queue's shared clock so
// that no two messages of one queue share it and later arrivals sort later.
type ID uint64

// idDigits is the width of an ID's text form: 13 hex digits last until 2112.
const idDigits = 13

// String returns the ID as 13 lowercase hex digits, which sort as the IDs do.
func (id ID) String() string {
	const hex = "0123456789abcdef"
	var b [idDigits]byte
	for i := idDigits - 1; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// ParseID parses the text form of an ID.
func ParseID(s string) (ID, error) {
	if len(s) != idDigits {
		return 0, fmt.Errorf("queue id %q: not %d hex digits", s, idDigits)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, fmt.Errorf("queue id %q: not %d lowercase hex digits", s, idDigits)
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return ID(v), err
}

// Time returns the moment the ID was drawn, as far as the clock knew it.
func (id ID) Time() time.Time { return time.UnixMicro(int64(id)) }

// clock hands out IDs from a counter that every process of a queue shares
// through a memory-mapped file (lock/clock). Each ID is the larger of the
// wall clock and the last ID plus one, set with a compare-and-swap, so IDs
// are unique across processes and never go backwards when the system clock
// steps back: they then run ahead of it by a microsecond an ID until it
// catches up. Should the file be lost with a power cut, the runner raises
// the counter above every ID still in the queue when it starts (Seed).
type clock struct {
	mem []byte
	ctr *uint64
}

// openClock maps the clock file f (opened by openSafe) and closes f.
func openClock(f *os.File) (*clock, error) {
	path := f.Name()
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const size = 8
	if st.Size() < size {
		// Two processes may race here; both grow the file to the same size
		// and the counter starts at zero either way.
		if err := f.Truncate(size); err != nil {
			return nil, err
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	// A page-aligned mapping is aligned for 64-bit atomics.
	return &clock{mem: mem, ctr: (*uint64)(unsafe.Pointer(&mem[0]))}, nil
}

// Next returns a new ID.
func (c *clock) Next() ID {
	for {
		old := atomic.LoadUint64(c.ctr)
		next := uint64(wallClock().UnixMicro())
		if next <= old {
			next = old + 1
		}
		if atomic.CompareAndSwapUint64(c.ctr, old, next) {
			return ID(next)
		}
	}
}

// wallClock is the system clock as IDs see it; tests step it back.
var wallClock = time.Now

// Seed makes every later ID larger than id.
func (c *clock) Seed(id ID) {
	for {
		old := atomic.LoadUint64(c.ctr)
		if old >= uint64(id) || atomic.CompareAndSwapUint64(c.ctr, old, uint64(id)) {
			return
		}
	}
}

func (c *clock) Close() error { return unix.Munmap(c.mem) }
