package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The journal holds what the runner learned about messages: per recipient
// its state, attempts, next try and last outcome (outcome.go); per
// message whether it is held, picked up or removed. Only the runner writes
// it. A journal file is
//
//	magic  "gwqjnl1\n"
//	record len:u32 payload crc:u32
//	payload kind:u8 id:u64 ...
//
// with crc the CRC-32C of payload. Every record states a whole value, never
// a difference, so the last record about a thing wins and a reader needs no
// lock: it applies the files in name order and stops a file at its first
// bad record (a torn append of a runner that died; nothing after it was
// flushed). The runner rewrites the live state into a new file from time
// to time and removes the older ones (compact).
const jnlMagic = "gwqjnl1\n"

// Journal record kinds.
const (
	jPicked    = 'P' // the runner has seen the message
	jRecipient = 'R' // idx:u32 state:u8 attempts:u32 next:i64 errlen:u16 err (read only: older gw)
	jOutcome   = 'O' // idx:u32 state:u8 attempts:u32 next:i64 outcome (outcome.go)
	jHold      = 'H'
	jRelease   = 'U'
	jRemoved   = 'X' // delivered, bounced or deleted: gone for readers
	jDot       = 'D' // idx:u32: the final dot to recipient idx is going out (dot.go)
)

const maxJournalRecord = 1 + 8 + 4 + 1 + 4 + 8 + maxOutcome
const maxErrorText = 4000

// State is a recipient's delivery state.
type State uint8

// Recipient states. Held is a message's state, shown on its pending
// recipients by readers.
const (
	Pending State = iota
	Delivered
	Failed // permanently: bounced or to be bounced
	stateCount
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "state" + strconv.Itoa(int(s))
}

// jrec is one journal record.
type jrec struct {
	Kind     byte
	ID       ID
	Index    uint32
	State    State
	Attempts uint32
	Next     int64   // Unix seconds
	Out      Outcome // the last outcome ('R' records: its text only)
}

func (r jrec) encode(b []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	p := len(b)
	b = append(b, r.Kind)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	if r.Kind == jRecipient || r.Kind == jOutcome {
		b = binary.BigEndian.AppendUint32(b, r.Index)
		b = append(b, byte(r.State))
		b = binary.BigEndian.AppendUint32(b, r.Attempts)
		b = binary.BigEndian.AppendUint64(b, uint64(r.Next))
	}
	switch r.Kind {
	case jRecipient:
		e := clip(r.Out.String(), maxErrorText)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	case jOutcome:
		b = r.Out.encode(b)
	}
	if r.Kind == jDot {
		b = binary.BigEndian.AppendUint32(b, r.Index)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-p))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[p:], castagnoli()))
}

func decodeJrec(p []byte) (jrec, error) {
	var r jrec
	if len(p) < 9 {
		return r, errors.New("short record")
	}
	r.Kind, r.ID = p[0], ID(binary.BigEndian.Uint64(p[1:]))
	p = p[9:]
	switch r.Kind {
	case jPicked, jHold, jRelease, jRemoved:
		if len(p) != 0 {
			return r, fmt.Errorf("record %c with %d extra bytes", r.Kind, len(p))
		}
	case jRecipient:
		if len(p) < 19 {
			return r, errors.New("short recipient record")
		}
		r.Index = binary.BigEndian.Uint32(p)
		r.State = State(p[4])
		r.Attempts = binary.BigEndian.Uint32(p[5:])
		r.Next = int64(binary.BigEndian.Uint64(p[9:]))
		n := int(binary.BigEndian.Uint16(p[17:]))
		if len(p) != 19+n || n > maxErrorText || r.State >= stateCount {
			return r, errors.New("bad recipient record")
		}
		r.Out = TextOutcome(string(p[19:]), r.State)
		r.Kind = jOutcome // one kind from here on: the reader has converted it
	case jOutcome:
		if len(p) < 17 {
			return r, errors.New("short outcome record")
		}
		r.Index = binary.BigEndian.Uint32(p)
		r.State = State(p[4])
		r.Attempts = binary.BigEndian.Uint32(p[5:])
		r.Next = int64(binary.BigEndian.Uint64(p[9:]))
		if r.State >= stateCount {
			return r, errors.New("bad outcome record")
		}
		o, err := decodeOutcome(p[17:])
		if err != nil {
			return r, err
		}
		r.Out = o
	case jDot:
		if len(p) != 4 {
			return r, errors.New("bad dot record")
		}
		r.Index = binary.BigEndian.Uint32(p)
	default:
		return r, fmt.Errorf("unknown journal record kind 0x%02x", r.Kind)
	}
	return r, nil
}

// readJournal calls fn for every good record of the journal on r and
// returns a Problem for a bad or incomplete tail.
func readJournal(r io.Reader, fn func(jrec)) (*Problem, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(jnlMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return &Problem{0, true, "no journal header"}, nil
		}
		return nil, err
	}
	if string(magic) != jnlMagic {
		return &Problem{0, false, "not a gw journal (bad magic)"}, nil
	}
	off := int64(len(jnlMagic))
	var lenb [4]byte
	buf := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(br, lenb[:]); err != nil {
			if err == io.EOF {
				return nil, nil
			}
			if err == io.ErrUnexpectedEOF {
				return &Problem{off, true, "file ends inside a record"}, nil
			}
			return nil, err
		}
		n := binary.BigEndian.Uint32(lenb[:])
		if n > maxJournalRecord {
			return &Problem{off, false, fmt.Sprintf("record length %d too large", n)}, nil
		}
		if cap(buf) < int(n)+4 {
			buf = make([]byte, 0, int(n)+4)
		}
		b := buf[:n+4]
		if _, err := io.ReadFull(br, b); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return &Problem{off, true, "file ends inside a record"}, nil
			}
			return nil, err
		}
		if crc32.Checksum(b[:n], castagnoli()) != binary.BigEndian.Uint32(b[n:]) {
			return &Problem{off, false, "checksum mismatch"}, nil
		}
		rec, err := decodeJrec(b[:n])
		if err != nil {
			return &Problem{off, false, err.Error()}, nil
		}
		fn(rec)
		off += int64(n) + 8
	}
}

// msgState is what the journal says of one message.
type msgState struct {
	picked, held, removed bool
	rcpts                 map[uint32]jrec
	dots                  map[uint32]bool // a dot record is the last word on these
}

func (s *msgState) apply(r jrec) {
	switch r.Kind {
	case jPicked:
		s.picked = true
	case jHold:
		s.held = true
	case jRelease:
		s.held = false
	case jRemoved:
		s.removed = true
	case jOutcome:
		if s.rcpts == nil {
			s.rcpts = make(map[uint32]jrec)
		}
		s.rcpts[r.Index] = r
		delete(s.dots, r.Index)
	case jDot:
		if s.dots == nil {
			s.dots = make(map[uint32]bool)
		}
		s.dots[r.Index] = true
	}
}

// journalFiles lists the journal files of dir in the order they apply.
func journalFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, err := strconv.ParseUint(e.Name(), 16, 64); err == nil && len(e.Name()) == 16 {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// loadJournal reads every journal file of q. A file that vanishes while
// it is read means the runner compacted meanwhile: the whole read starts
// again, since the newer file holds everything the vanished one did.
//
// A journal file that openSafe refuses is left out of states and names and
// returned in unsafe: a journal linked in from elsewhere must not decide
// what becomes of this queue's messages.
func (q *Queue) loadJournal() (states map[ID]*msgState, names []string, problems []fileProblem, unsafe []*UnsafeError, err error) {
	dir := q.path(dirJournal)
	for attempt := 0; ; attempt++ {
		states = make(map[ID]*msgState)
		all, err := journalFiles(dir)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		names, problems, unsafe = nil, nil, nil
		vanished := false
		for _, name := range all {
			f, err := q.openSafe(dirJournal+"/"+name, unix.O_RDONLY, 0, regular)
			if errors.Is(err, os.ErrNotExist) {
				vanished = true
				break
			}
			var ue *UnsafeError
			if errors.As(err, &ue) {
				unsafe = append(unsafe, ue)
				continue
			}
			if err != nil {
				return nil, nil, nil, nil, err
			}
			names = append(names, name)
			p, err := readJournal(f, func(r jrec) {
				s := states[r.ID]
				if s == nil {
					s = &msgState{}
					states[r.ID] = s
				}
				s.apply(r)
			})
			f.Close()
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("journal %s: %w", name, err)
			}
			if p != nil {
				problems = append(problems, fileProblem{"journal/" + name, p})
			}
		}
		if !vanished || attempt == 10 {
			return states, names, problems, unsafe, nil
		}
	}
}

// journalWriter appends records for the runner and flushes them in groups:
// many goroutines append, and one Sync covers all that came before it.
type journalWriter struct {
	f *os.File

	mu     sync.Mutex
	buf    []byte
	queued uint64 // records appended
	syncMu sync.Mutex
	synced uint64 // records known durable
	size   int64
	broken error // a flush failed: the file can no longer be trusted
}

func createJournal(path string) (*journalWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(jnlMagic); err != nil {
		f.Close()
		return nil, err
	}
	return &journalWriter{f: f, size: int64(len(jnlMagic))}, nil
}

func (w *journalWriter) append(r jrec) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = r.encode(w.buf)
	w.queued++
	return w.queued
}

// sync makes every record up to seq durable.
func (w *journalWriter) sync(seq uint64) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.synced >= seq {
		return nil
	}
	if w.broken != nil {
		return w.broken
	}
	upto, err := w.writeOut()
	if err != nil {
		return err
	}
	if err := fdatasync(w.f); err != nil {
		// After a failed flush the kernel may have dropped the pages and
		// a later flush may succeed without them: this file can no longer
		// be trusted. The runner restates everything in a new one.
		w.broken = err
		return err
	}
	w.synced = upto
	return nil
}

func (w *journalWriter) close() error { return w.f.Close() }

// journalName returns the file name of journal number n.
func journalName(n uint64) string { return fmt.Sprintf("%016x", n) }

// now is the clock of the runner side, a variable so tests can move it.
var now = time.Now
