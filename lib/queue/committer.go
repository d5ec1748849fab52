package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
)

// Committer writes messages of many concurrent injections into shared
// segments and makes them durable together: every message waiting when a
// flush starts is covered by that one fdatasync, and each caller returns
// only after the flush that covers its message (group commit, as a
// database's write-ahead log does). This is the path of gw-queued; see
// gw-queue.5 for why it beats a file per message on this kind of disk.
//
// There is no committer goroutine: the caller that finds no flush under
// way writes and flushes its message itself, on its own goroutine, and
// callers that arrive meanwhile wait in line; when its flush returns, the
// first of them leads the next flush, for all of them. A lone message
// (a quiet gateway's every message) thus costs no hand-off between
// goroutines, each a wake-up of a thread, and a busy gateway still
// batches everything that arrived during one flush into the next.
type Committer struct {
	q *Queue

	// MaxSegmentSize and MaxSegmentAge bound a segment: past either, it is
	// sealed and a new one begins. A sealed segment can be removed by the
	// runner as soon as its messages are delivered; an unsealed one only
	// after Ossified, so MaxSegmentAge must stay far below Ossified.
	MaxSegmentSize int64
	MaxSegmentAge  time.Duration
	// SealIdle seals a segment that took no message for that long. While
	// a segment is open gw-queued repeats its flushed notice (see
	// announceEvery); once sealed there is nothing to repeat, and an idle
	// gw-queued, with no timer armed, does not wake at all.
	SealIdle time.Duration

	mu      sync.Mutex
	pending []*commitReq // waiting for a flush, in arrival order
	busy    bool         // someone holds the segment: a leader, tick or Close
	closed  bool
	idle    sync.Cond // busy went false (Close waits for it)
	repeat  *time.Timer

	// owned by whoever set busy
	seg      *os.File
	segName  string
	segSize  int64
	segCount uint32
	segBorn  time.Time
	lastNew  time.Time // when the segment last took a batch
	trigger  *os.File  // write end of lock/trigger, nil while no runner reads it
}

type commitReq struct {
	rec  [][]byte // the record, in pieces (Incoming.finish)
	size int      // its length
	id   ID
	// done carries the flush's outcome, or errLead: the caller is first in
	// line and flushes the line itself.
	done chan error
}

// errLead tells a waiting caller that the flush before it is over and the
// next one is its to make.
var errLead = errors.New("lead the next flush")

// maxBatchBytes bounds the bytes one flush covers, so that one flush never
// waits on an unbounded write.
const maxBatchBytes = 16 << 20

// NewCommitter makes a committer on q. Close it to seal its segment.
// It first raises q's clock above every ID the queue may hold (seedClock).
func (q *Queue) NewCommitter() *Committer {
	q.seedClock()
	c := &Committer{
		q:              q,
		MaxSegmentSize: 64 << 20,
		MaxSegmentAge:  5 * time.Minute,
		SealIdle:       10 * announceEvery,
	}
	c.idle.L = &c.mu
	// Armed only while a segment is open, for announceEvery after its
	// last flush: a notice each flush sends makes the repeat unneeded, and
	// with no open segment nothing is to be told.
	c.repeat = time.AfterFunc(time.Hour, c.tick)
	c.repeat.Stop()
	return c
}

// seedHorizon bounds how long before the newest segment's name a shared
// segment can have been opened and still take messages: MaxSegmentAge
// with a wide margin for a committer configured otherwise.
const seedHorizon = 30 * time.Minute

// seedClock raises q's clock above every ID in the queue before this
// process draws any, so that no ID can be drawn twice even if the clock's
// page was lost in a power cut while the system clock is behind the last
// IDs. Segment names are IDs; so are the messages inside a shared
// segment, drawn while it was open, some after its name: the segments
// opened within seedHorizon of the newest name are read for them. (The
// runner seeds from every message too, when it starts.)
func (q *Queue) seedClock() {
	names, _, err := q.segmentNames()
	if err != nil || len(names) == 0 {
		return
	}
	newest, err := ParseID(names[len(names)-1])
	if err != nil {
		return
	}
	q.clock.Seed(newest)
	horizon := newest - ID(seedHorizon/time.Microsecond)
	for i := len(names) - 1; i >= 0; i-- {
		name, err := ParseID(names[i])
		if err != nil || name < horizon {
			break
		}
		seg, err := q.scanSegment(names[i], 0, -1)
		if err != nil {
			continue // gone (delivered) or unreadable: nothing to seed from
		}
		for _, m := range seg.messages {
			q.clock.Seed(m.ID)
		}
	}
}

// Incoming is a message being received into memory for a Committer. Its
// body is held in blocks of a fixed size drawn from a pool, not in one
// buffer that doubles as it grows: the memory a message holds is its size
// rounded up to a block, with no copy on growth and no garbage left for
// the collector, so that a caller can bound what all incoming messages
// hold together (gw-queued's memory budget) by counting bytes.
type Incoming struct {
	id     ID
	head   []byte   // kind, header length, header, chunk length (set by finish)
	blocks [][]byte // the body so far; every block but the last is full
	size   int64
}

// IncomingBlock is the size of the blocks an Incoming holds its body in.
const IncomingBlock = 64 << 10

var blockPool = sync.Pool{New: func() any { return new([IncomingBlock]byte) }}

// NewIncoming starts a message from uid/pid to be committed by c.
func (c *Committer) NewIncoming(uid, pid uint32) *Incoming {
	p := &Incoming{id: c.q.NewID()}
	h := header{ID: p.id, Arrival: time.Now(), UID: uid, PID: pid}.bytes()
	p.head = make([]byte, 0, 1+4+len(h)+4)
	p.head = append(p.head, kindMessage)
	p.head = binary.BigEndian.AppendUint32(p.head, uint32(len(h)))
	p.head = append(p.head, h...)
	p.head = append(p.head, 0, 0, 0, 0) // the one chunk's length, set by finish
	return p
}

// ID returns the message's queue ID.
func (p *Incoming) ID() ID { return p.id }

// Size returns the body bytes received so far.
func (p *Incoming) Size() int64 { return p.size }

// Write appends body bytes.
func (p *Incoming) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		blk := p.room()
		k := copy(blk[len(blk):IncomingBlock], b)
		p.grew(k)
		b = b[k:]
	}
	return n, nil
}

// ReadChunk appends the next n bytes of r to the body, read straight into
// its blocks, with no buffer in between: a reader that reads a request
// from its source (a drained bufio.Reader, the connection itself) puts
// the bytes where they stay for the commit's writev. Fewer than n bytes is
// io.ErrUnexpectedEOF; what was read is kept.
func (p *Incoming) ReadChunk(r io.Reader, n int) error {
	for n > 0 {
		blk := p.room()
		k := min(n, IncomingBlock-len(blk))
		got, err := io.ReadFull(r, blk[len(blk):len(blk)+k])
		p.grew(got)
		n -= got
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// room returns the last block, taking a new one from the pool when it is
// full (or there is none): what comes next is appended to it.
func (p *Incoming) room() []byte {
	if last := len(p.blocks) - 1; last >= 0 && len(p.blocks[last]) < IncomingBlock {
		return p.blocks[last]
	}
	blk := blockPool.Get().(*[IncomingBlock]byte)[:0]
	p.blocks = append(p.blocks, blk)
	return blk
}

// grew counts k bytes appended to the last block.
func (p *Incoming) grew(k int) {
	last := len(p.blocks) - 1
	p.blocks[last] = p.blocks[last][:len(p.blocks[last])+k]
	p.size += int64(k)
}

// WriteTo writes the body received so far to w, to hand it over to a
// MessageWriter when the message outgrows memory.
func (p *Incoming) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, blk := range p.blocks {
		n, err := w.Write(blk)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Release gives the body's blocks back to the pool. Commit does it; a
// caller that abandons an Incoming (or moved its body elsewhere) calls
// it. The Incoming holds no memory afterwards; Size still reports the
// body's size, for the log line of a committed message.
func (p *Incoming) Release() {
	for _, blk := range p.blocks {
		blockPool.Put((*[IncomingBlock]byte)(blk[:IncomingBlock]))
	}
	p.blocks = nil
}

// finish closes the record: body length, envelope, checksum. The record
// is the head, the body's blocks and a tail, written together by writev.
func (p *Incoming) finish(env envelope.Envelope) [][]byte {
	if p.size > maxChunk {
		panic("queue.Incoming.finish: body larger than one chunk")
	}
	binary.BigEndian.PutUint32(p.head[len(p.head)-4:], uint32(p.size))
	var tail []byte
	if p.size > 0 {
		tail = append(tail, 0, 0, 0, 0) // end of body
	}
	// An empty body has no chunk: the length in the head is the end mark.
	e := env.Stored()
	tail = binary.BigEndian.AppendUint32(tail, uint32(len(e)))
	tail = append(tail, e...)
	crc := crc32.Update(0, castagnoli(), p.head)
	for _, blk := range p.blocks {
		crc = crc32.Update(crc, castagnoli(), blk)
	}
	crc = crc32.Update(crc, castagnoli(), tail)
	tail = binary.BigEndian.AppendUint32(tail, crc)
	rec := make([][]byte, 0, len(p.blocks)+2)
	rec = append(rec, p.head)
	rec = append(rec, p.blocks...)
	return append(rec, tail)
}

// MaxIncoming is the largest body a Incoming should hold; a caller moves a
// larger message to a MessageWriter (NewMessage) and streams the rest.
const MaxIncoming = 1 << 20

// ErrCommitterClosed is returned for a message committed after Close.
var ErrCommitterClosed = errors.New("committer closed")

// Commit adds env to p and returns once p is durable in the queue, or with
// the error that kept it out (an *InjectError).
func (c *Committer) Commit(p *Incoming, env envelope.Envelope) error {
	defer p.Release() // once written, or given up
	req := &commitReq{rec: p.finish(env), id: p.id, done: make(chan error, 1)}
	for _, b := range req.rec {
		req.size += len(b)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrCommitterClosed
	}
	c.pending = append(c.pending, req)
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if !lead {
		// In line behind a flush. When it ends, this message is either
		// covered by the next flush, whose leader tells its outcome, or
		// first in line, and passed the lead.
		if err := <-req.done; err != errLead {
			return err
		}
	}
	return c.lead()
}

// lead flushes the line of waiting messages, the caller's first among them
// (it is first in line: it found no flush under way, or was passed the
// lead), then passes the lead on and tells the others their outcome.
func (c *Committer) lead() error {
	c.mu.Lock()
	n, size := 1, c.pending[0].size
	for n < len(c.pending) && size+c.pending[n].size <= maxBatchBytes {
		size += c.pending[n].size
		n++
	}
	batch := c.pending[:n:n]
	c.pending = c.pending[n:]
	c.mu.Unlock()

	err := c.write(batch)
	if err == nil {
		c.lastNew = time.Now()
		c.announce()
	}
	// The next flush begins before the waiters of this one are told:
	// under load a flush is always under way.
	c.release()
	for _, r := range batch[1:] {
		r.done <- err
	}
	return err
}

// release ends the caller's hold on the segment: the lead goes to the
// first caller in line, or, with none, the committer falls idle with its
// repeat timer armed while a segment is open.
func (c *Committer) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		c.pending[0].done <- errLead
		return
	}
	c.busy = false
	c.idle.Broadcast()
	if c.closed {
		return
	}
	if c.seg != nil {
		c.repeat.Reset(announceEvery)
	} else {
		c.repeat.Stop()
	}
}

// tick runs announceEvery after the last flush while a segment is open:
// it seals a segment that is idle or old, or repeats the flushed notice
// for a runner that started since. A flush under way makes it
// unneeded: its leader arms the timer again when it is done.
func (c *Committer) tick() {
	c.mu.Lock()
	if c.busy || c.closed {
		c.mu.Unlock()
		return
	}
	c.busy = true
	c.mu.Unlock()
	if c.seg != nil && (time.Since(c.segBorn) > c.MaxSegmentAge || time.Since(c.lastNew) >= c.SealIdle) {
		c.seal()
	}
	if c.seg != nil {
		c.announce()
	}
	c.release()
}

// Close seals the current segment after the messages already handed in;
// a message committed afterwards gets ErrCommitterClosed.
func (c *Committer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for c.busy {
		c.idle.Wait()
	}
	c.busy = true
	c.mu.Unlock()
	c.repeat.Stop()
	c.seal()
	if c.trigger != nil {
		c.trigger.Close()
		c.trigger = nil
	}
	return nil
}

// write appends batch to the current segment with one write and one flush.
// On failure the segment is cut back to where the batch began and given
// up. The runner reads the segment only up to the length announced after a
// flush, so it never sees a batch that was not acknowledged; a lock-free
// reader such as gw-qstat may, for the length of the flush (S2).
func (c *Committer) write(batch []*commitReq) error {
	if c.seg != nil && (c.segSize >= c.MaxSegmentSize || time.Since(c.segBorn) > c.MaxSegmentAge) {
		c.seal()
	}
	if c.seg == nil {
		if err := c.newSegment(); err != nil {
			return err
		}
	}
	bufs := batch[0].rec // a lone message's pieces as they are
	if len(batch) > 1 {
		bufs = nil
		for _, r := range batch {
			bufs = append(bufs, r.rec...)
		}
	}
	before := c.segSize
	n, err := writev(c.seg, bufs)
	if err == nil {
		err = fdatasync(c.seg)
		if err != nil {
			err = &InjectError{StepSync, err}
		} else if err = c.stillLinked(); err != nil {
			err = &InjectError{StepSync, err}
		}
	} else {
		err = &InjectError{StepWrite, err}
	}
	if err != nil {
		c.abandon(before, batch)
		return err
	}
	c.segSize += n
	c.segCount += uint32(len(batch))
	return nil
}

// stillLinked checks that the segment still has a name: a flush into a
// file that something removed would acknowledge messages nobody can read.
// The runner never removes a segment a live writer holds (holdWriting);
// this is the check behind that rule.
func (c *Committer) stillLinked() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(c.seg.Fd()), &st); err != nil {
		return err
	}
	if st.Nlink == 0 {
		return fmt.Errorf("segment %s was removed while being written", c.segName)
	}
	return nil
}

// announce tells the runner how far the current segment is flushed, so
// that it reads no record of a batch before the batch is durable; with no
// segment open, it only wakes the runner. No runner is fine: the notice is
// repeated every announceEvery.
func (c *Committer) announce() {
	if c.trigger == nil {
		f, err := c.q.openSafe(fileTrig, unix.O_WRONLY, 0, fifo)
		if err != nil {
			return
		}
		c.trigger = f
	}
	msg := []byte{'!'}
	if c.seg != nil {
		msg = flushedNotice(c.segName, c.segSize)
	}
	if _, err := unix.Write(int(c.trigger.Fd()), msg); err == unix.EPIPE {
		c.trigger.Close() // the runner went away; reopen for the next one
		c.trigger = nil
	}
}

// newSegment starts a shared segment: made in tmp/ and locked there
// (holdWriting), then renamed into seg/, so that no reader ever finds it in
// seg/ without its writer's lock.
func (c *Committer) newSegment() error {
	if err := c.q.checkInjector(); err != nil {
		return &InjectError{StepCreate, err}
	}
	name := c.q.NewID().String()
	tmp, path := c.q.path(dirTmp, name), c.q.path(dirSeg, name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return &InjectError{StepCreate, err}
	}
	fail := func(step Step, err error) error {
		f.Close()
		os.Remove(tmp)
		return &InjectError{step, err}
	}
	if err := holdWriting(f); err != nil {
		return fail(StepCreate, err)
	}
	if _, err := f.WriteString(segMagic); err != nil {
		return fail(StepWrite, err)
	}
	if err := renameNoReplace(tmp, path); err != nil {
		return fail(StepCreate, err)
	}
	if err := syncDir(c.q.path(dirSeg)); err != nil {
		f.Close()
		os.Remove(path)
		return &InjectError{StepSync, err}
	}
	c.seg, c.segName, c.segSize, c.segCount, c.segBorn = f, name, int64(len(segMagic)), 0, time.Now()
	return nil
}

// seal ends the current segment with a seal record. The seal is not
// flushed: if it is lost, the runner treats the segment as ended once it is
// older than Ossified, as it does for a segment whose writer died.
func (c *Committer) seal() {
	if c.seg == nil {
		return
	}
	c.seg.Write(sealRecord(c.segCount))
	c.seg.Close()
	c.seg = nil
	c.announce() // the runner may now read the segment to its end
}

// abandon cuts the segment back to size and stops writing it. If the cut
// fails, cancel records withdraw the batch's messages instead.
func (c *Committer) abandon(size int64, batch []*commitReq) {
	if err := c.seg.Truncate(size); err != nil {
		for _, r := range batch {
			c.seg.Write(cancelRecord(r.id))
		}
	}
	fdatasync(c.seg)
	c.seg.Close()
	c.seg = nil
	c.announce()
}

// writev writes every buffer, looping over short writes.
func writev(f *os.File, bufs [][]byte) (int64, error) {
	var total int64
	fd := int(f.Fd())
	for len(bufs) > 0 {
		chunk := bufs
		if len(chunk) > 1024 { // IOV_MAX
			chunk = chunk[:1024]
		}
		n, err := unix.Writev(fd, chunk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		total += int64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return total, nil
}
