package queue

import (
	"errors"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/dsn"
)

// Ossified is the age after which the runner gives up on a segment that
// was never sealed: its writer is dead, whatever it did not finish will
// never be finished. It must exceed by far the longest an injector keeps a
// segment open: gw-queue's alarm (DeathAfter, 24 h, as qmail-queue's) and
// a Committer's MaxSegmentAge. qmail-send's OSSIFIED is the same idea.
const Ossified = 36 * time.Hour

// DeathAfter is how long gw-queue may take over one message before it
// gives up with exit 52 (qmail-queue's alarm). Ossified must exceed it.
const DeathAfter = 24 * time.Hour

// Recipient is one recipient of a queued message with its delivery state.
type Recipient struct {
	Address  string
	State    State
	Attempts int
	NextTry  time.Time // zero: as soon as possible
	// Outcome is the last attempt's outcome (or why the recipient
	// waits); its String is the "last error" gw-qstat shows.
	Outcome Outcome
	DSN     dsn.Rcpt // NOTIFY and ORCPT, as the envelope gave them
	// DotSent: the journal's last word on the recipient is that the final
	// dot of a delivery to it went out, and no reply was recorded after:
	// the runner stopped in between (a possible duplicate; see dot.go).
	DotSent bool
}

// Message is a queued message as readers see it.
type Message struct {
	ID         ID
	Arrival    time.Time
	Size       int64 // bytes of the stored message (trace line included)
	Hops       int   // its trace lines (package hops), counted by the scan that found it
	Sender     string
	Recipients []Recipient
	DSN        dsn.Mail // RET and ENVID, as the envelope gave them
	RequireTLS bool     // REQUIRETLS (RFC 8689), as the envelope gave it
	Held       bool
	Picked     bool // the runner has seen it (qmail: preprocessed)
	UID, PID   uint32

	Segment string // where it is stored
	Offset  int64
	// Length is the record's length as the scan found it, so that a
	// reader of the body reads that record and no read-ahead of the next
	// ones; 0 (a Message made otherwise): read to the record's end.
	Length int64
}

// Done reports whether no recipient is pending any more.
func (m *Message) Done() bool {
	for _, r := range m.Recipients {
		if r.State == Pending {
			return false
		}
	}
	return true
}

// fileProblem is a file of the queue a reader could not wholly use.
type fileProblem struct {
	File string // relative to the queue directory
	*Problem
}

// FileProblem is a torn, foreign or abandoned file found by a reader.
type FileProblem struct {
	File    string
	Offset  int64
	Reason  string
	Age     time.Duration
	Corrupt bool // false: ends early (injection in progress or died)
}

// Snapshot is the queue as one lock-free pass over its files found it.
type Snapshot struct {
	Messages   []*Message // in ID order
	InProgress int        // injections under way: files in tmp/, young incomplete segments
	Problems   []FileProblem
	SetAside   []string // files in bad/
}

// segScan is what reading one segment found.
type segScan struct {
	name     string
	sealed   bool
	end      int64
	problem  *Problem
	modTime  time.Time
	size     int64
	messages []*Message
}

// scanSegment reads segment name from offset from (0: the start) up to
// offset limit (-1: its end), turning its message records into Messages. A
// cancel withdraws an earlier message.
func (q *Queue) scanSegment(name string, from, limit int64) (*segScan, error) {
	f, err := q.openSafe(dirSeg+"/"+name, unix.O_RDONLY, 0, regular)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return scanOpenSegment(f, name, from, limit)
}

// scanOpenSegment is scanSegment on segment name open as f. It reads at
// offsets (pread), never moving f's own, so that bodies read from the
// same file meanwhile (the runner's open segments) are undisturbed; and
// asks the file's size and time only of a read to its end, the one that
// needs them (size: did it grow since; time: its age).
func scanOpenSegment(f *os.File, name string, from, limit int64) (*segScan, error) {
	s := &segScan{name: name}
	if limit < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		s.modTime, s.size = st.ModTime(), st.Size()
	} else if limit < int64(len(segMagic)) || limit <= from {
		s.end = from
		return s, nil // nothing announced beyond what was read
	}
	n := int64(math.MaxInt64) - from // to the end
	if limit >= 0 {
		n = limit - from
	}
	r := io.NewSectionReader(f, from, n)
	fn := func(r Record) error {
		switch r.Kind {
		case kindMessage:
			m := &Message{
				ID: r.ID, Arrival: r.Arrival, Size: r.BodySize, Hops: r.Hops,
				Sender: r.Envelope.Sender, DSN: r.Envelope.DSN, RequireTLS: r.Envelope.RequireTLS, UID: r.UID, PID: r.PID,
				Segment: name, Offset: r.Offset, Length: r.Length,
			}
			m.Recipients = make([]Recipient, len(r.Envelope.Recipients))
			for i, a := range r.Envelope.Recipients {
				m.Recipients[i].Address = a
				m.Recipients[i].DSN = r.Envelope.RcptDSNOf(i)
			}
			s.messages = append(s.messages, m)
		case kindCancel:
			for i, m := range s.messages {
				if m.ID == r.ID {
					s.messages = append(s.messages[:i], s.messages[i+1:]...)
					break
				}
			}
		case kindSeal:
			s.sealed = true
		}
		return nil
	}
	var err error
	if from == 0 {
		s.end, s.problem, err = ReadSegment(r, fn)
	} else {
		s.end, s.problem, err = readRecords(r, from, fn)
	}
	return s, err
}

// segmentNames lists seg/: the names that are IDs, and the others.
func (q *Queue) segmentNames() (names, foreign []string, err error) {
	d, err := os.Open(q.path(dirSeg))
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	all, err := d.Readdirnames(-1)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		if _, err := ParseID(n); err == nil {
			names = append(names, n)
		} else {
			foreign = append(foreign, n)
		}
	}
	sort.Strings(names)
	return names, foreign, nil
}

// Snapshot reads the whole queue without locking or writing anything. It
// reads the journal first, then the segments, so that a message finished
// meanwhile is either shown in its earlier state or not at all. Files that
// vanish while it reads are what the runner removed: they are skipped.
func (q *Queue) Snapshot() (*Snapshot, error) {
	states, _, jprobs, unsafe, err := q.loadJournal()
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{}
	t := now()
	for _, p := range jprobs {
		snap.Problems = append(snap.Problems, FileProblem{File: p.File, Offset: p.Offset, Reason: p.Reason, Corrupt: !p.Incomplete})
	}
	for _, u := range unsafe {
		snap.Problems = append(snap.Problems, FileProblem{File: u.File, Reason: u.Reason, Corrupt: true})
	}
	names, foreign, err := q.segmentNames()
	if err != nil {
		return nil, err
	}
	for _, n := range foreign {
		if strings.HasPrefix(n, ".") {
			continue
		}
		snap.Problems = append(snap.Problems, FileProblem{File: "seg/" + n, Reason: "foreign file (name is not a queue id)", Corrupt: true})
	}
	for _, name := range names {
		s, err := q.scanSegment(name, 0, -1)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		var ue *UnsafeError
		if errors.As(err, &ue) {
			if q.inTmp(name) {
				snap.InProgress++ // being renamed in by link and unlink
			} else {
				snap.Problems = append(snap.Problems, FileProblem{File: ue.File, Reason: ue.Reason, Corrupt: true})
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.problem != nil {
			age := t.Sub(s.modTime)
			if s.problem.Incomplete && age < Ossified {
				snap.InProgress++
			} else {
				snap.Problems = append(snap.Problems, FileProblem{
					File: "seg/" + name, Offset: s.problem.Offset, Reason: s.problem.Reason,
					Age: age, Corrupt: !s.problem.Incomplete,
				})
			}
		}
		for _, m := range s.messages {
			if st := states[m.ID]; st != nil {
				if st.removed {
					continue
				}
				st.applyTo(m)
			}
			snap.Messages = append(snap.Messages, m)
		}
	}
	sort.Slice(snap.Messages, func(i, j int) bool { return snap.Messages[i].ID < snap.Messages[j].ID })
	if ents, err := os.ReadDir(q.path(dirTmp)); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && t.Sub(fi.ModTime()) < Ossified {
				snap.InProgress++
			}
		}
	}
	if ents, err := os.ReadDir(q.path(dirBad)); err == nil {
		for _, e := range ents {
			snap.SetAside = append(snap.SetAside, e.Name())
		}
	}
	return snap, nil
}

// applyTo sets m's flags and recipient states from the journal.
func (s *msgState) applyTo(m *Message) {
	m.Held, m.Picked = s.held, s.picked
	for i, r := range s.rcpts {
		if int(i) >= len(m.Recipients) {
			continue // a journal from another message with this ID: ignore
		}
		rc := &m.Recipients[i]
		rc.State, rc.Attempts, rc.Outcome = r.State, int(r.Attempts), r.Out
		if r.Next != 0 {
			rc.NextTry = time.Unix(r.Next, 0)
		}
	}
	for i := range s.dots {
		if int(i) < len(m.Recipients) && m.Recipients[i].State == Pending {
			m.Recipients[i].DotSent = true
		}
	}
}
