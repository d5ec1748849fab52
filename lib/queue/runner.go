package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Runner is the one process that owns a queue's committed messages: it
// finds new ones, records delivery outcomes in the journal, and removes
// what is finished. gw-send and the queue control tools act only through
// it. One runner a queue: OpenRunner takes lock/runner.
type Runner struct {
	q    *Queue
	lock *os.File
	fifo *os.File // read end of the trigger
	keep *os.File // write end, held so the read end never sees EOF
	wake chan struct{}

	notices flushedNotices // lengths gw-queued announced as flushed

	mu      sync.Mutex
	msgs    map[ID]*Message
	segs    map[string]*runSeg
	claimed map[ID]bool
	jw      *journalWriter
	jnum    uint64
	jlive   int64    // journal size right after the last compaction
	unseen  []string // segments load left a tail of for Refresh (cutUnseen)
}

// runSeg is what the runner knows of one segment.
type runSeg struct {
	sealed  bool
	eof     bool // the last read went to the end of the file, no writer left
	end     int64
	size    int64
	problem *Problem
	modTime time.Time
	ids     []ID        // messages still live
	removed map[ID]bool // messages removed whose record is still in the file
	file    *segFile    // held open while it is read on (readSegment)
}

// letGo closes rs's file, once no body read from it is open.
func (rs *runSeg) letGo() {
	if rs.file != nil {
		rs.file.release()
		rs.file = nil
	}
}

// Errors of the runner API.
var (
	ErrRunnerActive = errors.New("another runner holds the queue")
	ErrNoMessage    = errors.New("no such message")
	ErrClaimed      = errors.New("message is being delivered")
	ErrHeld         = errors.New("message is held")
)

// OpenRunner takes the runner lock, reads the whole queue, rewrites the
// journal compactly and starts listening to the trigger.
func (q *Queue) OpenRunner() (*Runner, error) {
	lock, err := q.openOrReplace(fileRunner, unix.O_RDWR|unix.O_CREAT, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if err == unix.EWOULDBLOCK {
			return nil, ErrRunnerActive
		}
		return nil, fmt.Errorf("lock %s: %w", fileRunner, err)
	}
	r := &Runner{q: q, lock: lock, msgs: make(map[ID]*Message), segs: make(map[string]*runSeg),
		claimed: make(map[ID]bool), wake: make(chan struct{}, 1)}
	if err := r.load(); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.openTrigger(); err != nil {
		r.Close()
		return nil, err
	}
	r.keepReserve()
	r.takeUnseen()
	return r, nil
}

func (r *Runner) load() error {
	states, jnames, _, unsafe, err := r.q.loadJournal()
	if err != nil {
		return err
	}
	for _, u := range unsafe {
		// Left out of the compacted journal; the new file says all.
		if _, err := r.q.setAside(u.File, u.Reason); err != nil {
			return err
		}
	}
	for _, n := range jnames {
		var v uint64
		fmt.Sscanf(n, "%x", &v)
		if v > r.jnum {
			r.jnum = v
		}
	}
	names, _, err := r.q.segmentNames()
	if err != nil {
		return err
	}
	var maxID ID
	for _, name := range names {
		id, _ := ParseID(name)
		if id > maxID {
			maxID = id
		}
		// At start every segment is read to its end, live writer or not:
		// the journal's records (removed, delivered) apply only to the
		// messages read now, and a message read later would come back as
		// new. In a segment a writer still holds, the messages from the
		// first one the journal knows nothing of are left for Refresh
		// (cutUnseen): their batch may be under a flush that fails.
		s, err := r.q.scanSegment(name, 0, -1)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if skip, err := r.refuse(name, err); skip || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		for _, m := range s.messages {
			if m.ID > maxID {
				maxID = m.ID
			}
		}
		rs := r.addSegment(s, r.readLimitAfterLoad(name))
		if !rs.eof && cutUnseen(s, rs, states) {
			r.unseen = append(r.unseen, name)
		}
		for _, m := range s.messages {
			st := states[m.ID]
			if st != nil && st.removed {
				rs.removed[m.ID] = true
				continue
			}
			if st != nil {
				st.applyTo(m)
			}
			m.Picked = true // compact records it
			r.msgs[m.ID] = m
			rs.ids = append(rs.ids, m.ID)
		}
	}
	r.q.clock.Seed(maxID)
	return r.compact(jnames)
}

// refuse handles an error of scanSegment for segment name: a file that
// openSafe refused is set aside (skip, with the error of the move, if
// any). One that is, for a moment, also in tmp/ is an injection renaming
// it in by link and unlink: skipped, to be read once it has one name.
func (r *Runner) refuse(name string, err error) (skip bool, _ error) {
	var ue *UnsafeError
	if !errors.As(err, &ue) {
		return false, nil
	}
	if r.q.inTmp(name) {
		return true, nil
	}
	_, err = r.q.setAside(ue.File, ue.Reason)
	return true, err
}

func (r *Runner) addSegment(s *segScan, limit int64) *runSeg {
	rs := r.segs[s.name]
	if rs == nil {
		rs = &runSeg{removed: make(map[ID]bool)}
		r.segs[s.name] = rs
	}
	rs.sealed = rs.sealed || s.sealed
	rs.eof = limit < 0
	rs.end, rs.problem, rs.modTime, rs.size = s.end, s.problem, s.modTime, s.size
	return rs
}

// readLimitAfterLoad is readLimit's answer for a segment load read to
// its end: -1 (nothing more to wait for) unless a writer still holds it.
func (r *Runner) readLimitAfterLoad(name string) int64 {
	if writerAlive(r.q.path(dirSeg, name)) {
		return 0
	}
	return -1
}

// readLimit returns how far the runner may read segment name: to its end
// (-1) when no writer holds it any more, else only the length its writer
// announced as flushed, so that no record of a batch is delivered before
// the batch is durable and acknowledged.
func (r *Runner) readLimit(name string) int64 {
	if !writerAlive(r.q.path(dirSeg, name)) {
		return -1
	}
	return r.notices.flushed(name)
}

// reserveSize is the space the runner keeps in lock/reserve for its own
// journal: injectors fill a disk to the last block, and without a reserve
// the runner could then neither record deliveries nor remove anything.
const reserveSize = 1 << 20

// keepReserve makes lock/reserve if it is missing; failing is fine (the
// disk is full): it is tried again at the next Collect.
func (r *Runner) keepReserve() {
	path := r.q.path(fileReserve)
	f, err := r.q.openOrReplace(fileReserve, unix.O_WRONLY|unix.O_CREAT, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() == reserveSize {
		return
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, reserveSize); err != nil {
		f.Close()
		os.Remove(path)
	}
}

// compact writes the live state into a new journal file and removes the
// older files. Should the disk be full, it gives up the reserve and tries
// once more. Call with r.mu held or before the runner is shared.
func (r *Runner) compact(old []string) error {
	err := r.compactOnce(old)
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		if os.Remove(r.q.path(fileReserve)) == nil {
			err = r.compactOnce(old)
		}
	}
	return err
}

func (r *Runner) compactOnce(old []string) error {
	r.jnum++
	dir := r.q.path(dirJournal)
	path := dir + "/" + journalName(r.jnum)
	jw, err := createJournal(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for _, m := range r.msgs {
		for _, rec := range stateRecords(m) {
			jw.append(rec)
		}
	}
	for _, rs := range r.segs {
		for id := range rs.removed {
			jw.append(jrec{Kind: jRemoved, ID: id})
		}
	}
	if err := jw.sync(jw.queued); err != nil {
		jw.close()
		os.Remove(path)
		return err
	}
	if err := syncDir(dir); err != nil {
		jw.close()
		return err
	}
	if old := r.jw; old != nil {
		// The new file holds all the old one did: a Sync still waiting on
		// the old writer finds its records durable and returns.
		old.syncMu.Lock()
		old.synced = old.queued
		old.close()
		old.syncMu.Unlock()
	}
	r.jw, r.jlive = jw, jw.size
	for _, n := range old {
		// A file planted since the load is set aside, not removed.
		if ue := r.q.lstatSafe(dirJournal + "/" + n); ue != nil {
			r.q.setAside(ue.File, ue.Reason)
			continue
		}
		os.Remove(dir + "/" + n)
	}
	// An old file that came back after a crash would bring back what the
	// new one says by leaving it out (a hold since released).
	return syncDir(dir)
}

// stateRecords are the journal records that restate m's state.
func stateRecords(m *Message) []jrec {
	var recs []jrec
	if m.Picked {
		recs = append(recs, jrec{Kind: jPicked, ID: m.ID})
	}
	if m.Held {
		recs = append(recs, jrec{Kind: jHold, ID: m.ID})
	}
	for i, rc := range m.Recipients {
		if rc.State != Pending || rc.Attempts != 0 {
			recs = append(recs, recipientRecord(m.ID, i, rc))
		}
		if rc.DotSent {
			recs = append(recs, jrec{Kind: jDot, ID: m.ID, Index: uint32(i)})
		}
	}
	return recs
}

func recipientRecord(id ID, i int, rc Recipient) jrec {
	var next int64
	if !rc.NextTry.IsZero() {
		next = rc.NextTry.Unix()
	}
	return jrec{Kind: jOutcome, ID: id, Index: uint32(i), State: rc.State,
		Attempts: uint32(rc.Attempts), Next: next, Out: rc.Outcome}
}

func (r *Runner) openTrigger() error {
	fifoFile, err := r.q.openSafe(fileTrig, unix.O_RDONLY, 0, fifo)
	var ue *UnsafeError
	if errors.As(err, &ue) {
		// Whatever stands there instead of the FIFO goes to bad/, and
		// the runner makes the FIFO anew, as Init does.
		if _, err := r.q.setAside(fileTrig, ue.Reason); err != nil {
			return fmt.Errorf("trigger: %w", err)
		}
		if err := unix.Mkfifo(r.q.path(fileTrig), 0o620); err != nil {
			return fmt.Errorf("mkfifo %s: %w", fileTrig, err)
		}
		fifoFile, err = r.q.openSafe(fileTrig, unix.O_RDONLY, 0, fifo)
	}
	if err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	r.fifo = fifoFile
	keep, err := r.q.openSafe(fileTrig, unix.O_WRONLY, 0, fifo)
	if err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	r.keep = keep
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.fifo.Read(buf)
			if err != nil {
				return
			}
			if !r.notices.feed(buf[:n]) {
				continue
			}
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}()
	return nil
}

// Wake returns a channel that receives when an injector pulled the trigger.
func (r *Runner) Wake() <-chan struct{} { return r.wake }

// Refresh reads what injectors committed since the last call: new
// segments, and what grew in unsealed ones. It returns the new messages in
// ID order and marks them picked up in the journal (flushed by the next
// Sync; losing the mark costs nothing).
func (r *Runner) Refresh() ([]Message, error) {
	names, _, err := r.q.segmentNames()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var fresh []Message
	for _, name := range names {
		if rs := r.segs[name]; rs != nil && rs.sealed {
			continue
		}
		if fresh, err = r.readSegment(name, r.readLimit(name), fresh); err != nil {
			return fresh, err
		}
	}
	sortMessages(fresh)
	return fresh, nil
}

// RefreshNoticed is Refresh for a wake-up (Wake). When the trigger carried
// only gw-queued's flushed-length notices for segments the runner already
// reads, it reads each of those from where it stopped up to the length
// announced, and lists no directory and asks no writer's lock: at a low
// rate every message comes with such a wake-up, and a listing of seg/ and
// a lock probe a segment for each would cost more than reading the
// message. Otherwise (a "!": gw-queue's new segment, a seal, an abandoned
// batch, gw-qctl; or a segment new to the runner, as after gw-queued
// restarted and left its old one to be read to its end) it is Refresh.
// pulled reports a "!", after which gw-qctl's requests are to be looked
// for.
func (r *Runner) RefreshNoticed() (fresh []Message, pulled bool, err error) {
	grown, pulled := r.notices.take()
	r.mu.Lock()
	known := !pulled
	for _, name := range grown {
		if r.segs[name] == nil {
			known = false
		}
	}
	if !known {
		r.mu.Unlock()
		fresh, err = r.Refresh()
		return fresh, pulled, err
	}
	defer r.mu.Unlock()
	sort.Strings(grown)
	for _, name := range grown {
		if rs := r.segs[name]; rs.sealed {
			continue
		}
		// The announced length is flushed and acknowledged whether or not
		// its writer still lives: reading up to it needs no lock probe.
		if fresh, err = r.readSegment(name, r.notices.flushed(name), fresh); err != nil {
			return fresh, pulled, err
		}
	}
	sortMessages(fresh)
	return fresh, pulled, nil
}

// readSegment reads unsealed segment name on from where the runner
// stopped, up to limit (-1: its end; see readLimit), appends its new
// messages to fresh and marks them picked up. Call with r.mu held.
func (r *Runner) readSegment(name string, limit int64, fresh []Message) ([]Message, error) {
	rs := r.segs[name]
	from := int64(0)
	if rs != nil {
		from = rs.end
		if limit >= 0 && limit <= rs.end {
			return fresh, nil // nothing more announced
		}
		if limit < 0 && rs.eof {
			st, err := os.Stat(r.q.path(dirSeg, name))
			if err != nil || st.Size() == rs.size {
				return fresh, nil // read to its end, and it did not grow
			}
		}
	}
	var opened *segFile
	if rs == nil || rs.file == nil {
		f, err := r.q.openSafe(dirSeg+"/"+name, unix.O_RDONLY, 0, regular)
		if errors.Is(err, os.ErrNotExist) {
			return fresh, nil
		}
		if skip, err := r.refuse(name, err); skip || err != nil {
			return fresh, err
		}
		if err != nil {
			return fresh, err
		}
		opened = newSegFile(f)
	}
	sf := opened
	if sf == nil {
		sf = rs.file
	}
	s, err := scanOpenSegment(sf.f, name, from, limit)
	if err != nil {
		if opened != nil {
			opened.release()
		}
		return fresh, err
	}
	rs = r.addSegment(s, limit)
	if opened != nil {
		rs.file = opened
	}
	if rs.sealed || rs.eof {
		rs.letGo() // nothing more will be read from it
	}
	for _, m := range s.messages {
		if _, dup := r.msgs[m.ID]; dup || rs.removed[m.ID] {
			continue
		}
		m.Picked = true
		r.jw.append(jrec{Kind: jPicked, ID: m.ID})
		r.msgs[m.ID] = m
		rs.ids = append(rs.ids, m.ID)
		fresh = append(fresh, cloneMessage(m))
	}
	return fresh, nil
}

func sortMessages(ms []Message) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}

func cloneMessage(m *Message) Message {
	c := *m
	c.Recipients = append([]Recipient(nil), m.Recipients...)
	return c
}

// Messages returns a copy of every live message, in ID order.
func (r *Runner) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Message, 0, len(r.msgs))
	for _, m := range r.msgs {
		out = append(out, cloneMessage(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Message returns a copy of message id.
func (r *Runner) Message(id ID) (Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	if m == nil {
		return Message{}, ErrNoMessage
	}
	return cloneMessage(m), nil
}

// Claim marks message id as being delivered, so that no second delivery,
// hold or removal acts on it until Unclaim. A held message is not claimed.
func (r *Runner) Claim(id ID) (Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	switch {
	case m == nil:
		return Message{}, ErrNoMessage
	case r.claimed[id]:
		return Message{}, ErrClaimed
	case m.Held:
		return Message{}, ErrHeld
	}
	r.claimed[id] = true
	return cloneMessage(m), nil
}

// Unclaim ends a Claim.
func (r *Runner) Unclaim(id ID) {
	r.mu.Lock()
	delete(r.claimed, id)
	r.mu.Unlock()
}

// Delivered records that recipient i of message id was delivered.
func (r *Runner) Delivered(id ID, i int) error {
	return r.setRecipient(id, i, func(rc *Recipient) {
		rc.State, rc.NextTry = Delivered, time.Time{}
	})
}

// Failed records that recipient i of message id failed permanently.
func (r *Runner) Failed(id ID, i int, o Outcome) error {
	return r.setRecipient(id, i, func(rc *Recipient) {
		rc.State, rc.Outcome, rc.NextTry = Failed, o, time.Time{}
	})
}

// Deferred records a temporary failure of recipient i of message id, to be
// tried again at next.
func (r *Runner) Deferred(id ID, i int, next time.Time, o Outcome) error {
	return r.setRecipient(id, i, func(rc *Recipient) {
		rc.Outcome, rc.NextTry = o, next
	})
}

// Reschedule makes pending recipient i of message id due at next, without
// counting an attempt: its attempts and last error stay (gw-qctl retry
// with no gw-send running; gw-send finds it due when it starts).
func (r *Runner) Reschedule(id ID, i int, next time.Time) error {
	return r.updateRecipient(id, i, false, func(rc *Recipient) { rc.NextTry = next })
}

// setRecipient applies change to a pending recipient, counts the attempt
// and journals the result.
func (r *Runner) setRecipient(id ID, i int, change func(*Recipient)) error {
	return r.updateRecipient(id, i, true, change)
}

func (r *Runner) updateRecipient(id ID, i int, attempt bool, change func(*Recipient)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	if m == nil {
		return ErrNoMessage
	}
	if i < 0 || i >= len(m.Recipients) {
		return fmt.Errorf("message %s has no recipient %d", id, i)
	}
	rc := &m.Recipients[i]
	if rc.State != Pending {
		return fmt.Errorf("message %s recipient %d is already %s", id, i, rc.State)
	}
	change(rc)
	rc.DotSent = false // this record is the word after the dot
	if attempt {
		rc.Attempts++
	}
	r.jw.append(recipientRecord(id, i, *rc))
	return nil
}

// MarkDamaged records that message id's stored bytes were found damaged
// after the runner read them, so that Collect sets its segment aside
// rather than removing it.
func (r *Runner) MarkDamaged(id ID, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.msgs[id]; m != nil {
		if rs := r.segs[m.Segment]; rs != nil && rs.problem == nil {
			rs.problem = &Problem{Reason: fmt.Sprintf("message %s damaged after it was read: %s", id, reason)}
		}
	}
}

// Hold keeps message id from delivery until Release.
func (r *Runner) Hold(id ID) error { return r.setHeld(id, true) }

// Release ends a Hold.
func (r *Runner) Release(id ID) error { return r.setHeld(id, false) }

func (r *Runner) setHeld(id ID, held bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	if m == nil {
		return ErrNoMessage
	}
	if held && r.claimed[id] {
		return ErrClaimed
	}
	m.Held = held
	kind := byte(jRelease)
	if held {
		kind = jHold
	}
	r.jw.append(jrec{Kind: kind, ID: id})
	return nil
}

// Remove takes message id out of the queue: delivered, bounced or deleted.
// Its bytes go when its whole segment does (Collect).
func (r *Runner) Remove(id ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	if m == nil {
		return ErrNoMessage
	}
	if r.claimed[id] {
		return ErrClaimed
	}
	r.removeLocked(m)
	return nil
}

// RemoveDelivered takes message id out of the queue if every recipient of
// it is delivered, and reports whether it did. Unlike Remove it acts on a
// claimed message: the caller is the delivery that holds the claim, and
// appends the removal beside its outcomes so that one Sync makes both
// durable. Nothing is owed to anyone (no bounce), so nothing waits for
// the outcomes to be durable first.
func (r *Runner) RemoveDelivered(id ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[id]
	if m == nil {
		return false
	}
	for _, rc := range m.Recipients {
		if rc.State != Delivered {
			return false
		}
	}
	r.removeLocked(m)
	return true
}

// removeLocked forgets m and journals its removal. Call with r.mu held.
func (r *Runner) removeLocked(m *Message) {
	id := m.ID
	delete(r.msgs, id)
	r.jw.append(jrec{Kind: jRemoved, ID: id})
	if rs := r.segs[m.Segment]; rs != nil {
		rs.removed[id] = true
		for k, x := range rs.ids {
			if x == id {
				rs.ids = append(rs.ids[:k], rs.ids[k+1:]...)
				break
			}
		}
	}
}

// Sync makes every journal record made so far durable. Concurrent calls
// share one flush. When the journal file fails, the runner restates the
// whole state, which it holds in memory, in a new journal file.
func (r *Runner) Sync() error {
	r.mu.Lock()
	seq := r.jw.queued
	jw := r.jw
	r.mu.Unlock()
	err := jw.sync(seq)
	if err == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jw != jw {
		return nil // another Sync restated the state, ours included
	}
	names, lerr := journalFiles(r.q.path(dirJournal))
	if lerr != nil {
		return err
	}
	if cerr := r.compact(names); cerr != nil {
		return fmt.Errorf("%v; restating the journal: %w", err, cerr)
	}
	return nil
}

// Body opens the stored message id for reading (see Queue.OpenBody), from
// its segment's open file when the runner holds one.
func (r *Runner) Body(id ID) (io.ReadCloser, error) {
	r.mu.Lock()
	m := r.msgs[id]
	if m == nil {
		r.mu.Unlock()
		return nil, ErrNoMessage
	}
	c := *m // the record's place is all a body needs
	var sf *segFile
	if rs := r.segs[m.Segment]; rs != nil && rs.file != nil && m.Length > 0 {
		sf = rs.file
		sf.hold()
	}
	r.mu.Unlock()
	if sf == nil {
		return r.q.OpenBody(&c)
	}
	// On an error openBodyIn has closed its reader, and so let the file go.
	return openBodyIn(io.NewSectionReader(sf.f, c.Offset, c.Length), &c, sf.release)
}

// CollectStats counts what one Collect removed.
type CollectStats struct {
	Segments  int // finished segments removed
	SetAside  int // finished segments with a bad tail, moved to bad/
	Leftovers int // dead injections and spool files removed
}

// Collect removes what is finished: segments all of whose messages are
// removed, once sealed or once no writer holds them and they were read to
// their end, and injection leftovers in tmp/ older than Ossified that no
// writer holds. A segment with a corrupt or cut-short tail is moved to
// bad/ rather than removed (Queue.TakeSetAside names it). The journal is flushed first, so a
// segment is never gone while the records saying its messages are done
// could still be lost; and compacted when it has grown.
func (r *Runner) Collect() (CollectStats, error) {
	var st CollectStats
	if err := r.Sync(); err != nil {
		return st, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := now()
	segDir := r.q.path(dirSeg)
	changed := false
	for name, rs := range r.segs {
		if len(rs.ids) != 0 {
			continue
		}
		if !rs.sealed && (!rs.eof || writerAlive(r.q.path(dirSeg, name))) {
			// Its writer still holds it, or died after the last read:
			// Refresh reads it to its end first.
			continue
		}
		var err error
		if rs.problem != nil {
			// Corrupt or cut short: whatever the bytes after the last
			// good record were, the sysadmin may want them.
			_, err = r.q.setAside(dirSeg+"/"+name, problemText(rs.problem))
			st.SetAside++
		} else {
			err = os.Remove(r.q.path(dirSeg, name))
			if len(rs.removed) == 0 {
				st.Leftovers++
			} else {
				st.Segments++
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		rs.letGo()
		delete(r.segs, name)
		r.notices.forget(name)
		changed = true
	}
	if changed {
		if err := syncDir(segDir); err != nil {
			return st, err
		}
	}
	st.Leftovers += removeOlder(r.q.path(dirTmp), t.Add(-Ossified))
	r.keepReserve()
	if r.jw.size > 4<<20 && r.jw.size > 2*r.jlive {
		names, err := journalFiles(r.q.path(dirJournal))
		if err != nil {
			return st, err
		}
		if err := r.jw.sync(r.jw.queued); err != nil {
			return st, err
		}
		if err := r.compact(names); err != nil {
			return st, err
		}
	}
	return st, nil
}

// problemText is a segment problem as the set-aside record gives it.
func problemText(p *Problem) string {
	what := "corrupt"
	if p.Incomplete {
		what = "ends inside a record"
	}
	return fmt.Sprintf("%s at offset %d: %s", what, p.Offset, p.Reason)
}

// removeOlder removes the files of dir last changed before cutoff that no
// live writer holds (holdWriting): a wall clock that jumps forward must not
// take a file from under its writer.
func removeOlder(dir string, cutoff time.Time) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) && !writerAlive(dir+"/"+e.Name()) {
			if os.Remove(dir+"/"+e.Name()) == nil {
				n++
			}
		}
	}
	return n
}

// Close flushes the journal and lets the queue go.
func (r *Runner) Close() error {
	var err error
	if r.jw != nil {
		err = r.Sync()
		r.jw.close()
	}
	r.mu.Lock()
	for _, rs := range r.segs {
		rs.letGo()
	}
	r.mu.Unlock()
	if r.fifo != nil {
		r.fifo.Close()
	}
	if r.keep != nil {
		r.keep.Close()
	}
	r.lock.Close()
	return err
}
