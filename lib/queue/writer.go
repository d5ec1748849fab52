package queue

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
)

// Step names the point of the commit protocol where an injection failed,
// so that gw-queue can answer with qmail-queue's code for it.
type Step string

// Steps of the commit protocol, in order.
const (
	StepCreate Step = "create" // making the segment file
	StepWrite  Step = "write"  // writing its bytes
	StepSync   Step = "sync"   // flushing file and directory
)

// InjectError is an injection that failed at Step; nothing of it is
// visible in the queue.
type InjectError struct {
	Step Step
	Err  error
}

func (e *InjectError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }
func (e *InjectError) Unwrap() error { return e.Err }

// DiskFull reports whether the failure was a full disk or quota.
func (e *InjectError) DiskFull() bool {
	return errors.Is(e.Err, unix.ENOSPC) || errors.Is(e.Err, unix.EDQUOT)
}

// MessageWriter streams one message into a segment of its own: the path of
// gw-queue, one process a message, and of messages too large to hold in
// memory. The segment is written as tmp/ID and renamed to seg/ID only once
// it is flushed, so readers never see it before it is durable: the rename
// is the commit point, as qmail's link of intd to todo is.
//
// If the writer dies before Commit, the runner removes the file in tmp/
// once it is older than Ossified (see Runner.Collect); gw-queue gives up
// long before that (its 24-hour alarm, DeathAfter).
type MessageWriter struct {
	q    *Queue
	id   ID
	path string // in tmp/ until the commit, then in seg/
	f    *os.File
	bw   *bufio.Writer
	enc  encoder
	buf  []byte // body bytes not yet written as a chunk
	size int64
	bufs *writerBufs // buf's and bw's memory, back to the pool once flushed
}

// writerBufs are a MessageWriter's buffers, kept in a pool: gw-queued may
// have a writer open for each of hundreds of clients (its memory budget
// spent), and buffers made anew for each message would be garbage the
// size of the traffic.
type writerBufs struct {
	chunk [bodyChunk]byte
	bw    *bufio.Writer
}

// The write buffer only gathers a record's small fields: a body chunk
// larger than what it holds goes to the file in one write of its own.
var writerPool = sync.Pool{New: func() any { return &writerBufs{bw: bufio.NewWriterSize(nil, 16<<10)} }}

// release gives the buffers back; the writer writes nothing more.
func (w *MessageWriter) release() {
	if w.bufs == nil {
		return
	}
	w.bufs.bw.Reset(nil)
	writerPool.Put(w.bufs)
	w.bufs, w.bw, w.buf, w.enc.w = nil, nil, nil, nil
}

// NewMessage starts a message from the process uid/pid (recorded for the
// trace and the listing) in a new segment named after its ID.
func (q *Queue) NewMessage(uid, pid uint32) (*MessageWriter, error) {
	if err := q.checkInjector(); err != nil {
		return nil, &InjectError{StepCreate, err}
	}
	id := q.NewID()
	path := q.path(dirTmp, id.String())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, &InjectError{StepCreate, err}
	}
	if err := holdWriting(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, &InjectError{StepCreate, err}
	}
	bufs := writerPool.Get().(*writerBufs)
	bufs.bw.Reset(f)
	w := &MessageWriter{q: q, id: id, path: path, f: f, bw: bufs.bw, bufs: bufs}
	w.enc.w = w.bw
	if _, err := w.bw.WriteString(segMagic); err != nil {
		w.Abort()
		return nil, &InjectError{StepWrite, err}
	}
	w.enc.begin(header{ID: id, Arrival: time.Now(), UID: uid, PID: pid})
	w.buf = bufs.chunk[:0]
	return w, nil
}

// ID returns the message's queue ID.
func (w *MessageWriter) ID() ID { return w.id }

// Size returns the body bytes written so far.
func (w *MessageWriter) Size() int64 { return w.size }

// errWriterDone is a write after Commit or Abort.
var errWriterDone = errors.New("message writer already committed or aborted")

// Write appends body bytes.
func (w *MessageWriter) Write(p []byte) (int, error) {
	if w.bufs == nil {
		return 0, &InjectError{StepWrite, errWriterDone}
	}
	n := len(p)
	for len(p) > 0 {
		if len(w.buf) == 0 && len(p) >= cap(w.buf) {
			// A whole chunk in p: encoded from there, not copied first.
			w.enc.chunk(p[:cap(w.buf)])
			p = p[cap(w.buf):]
			continue
		}
		room := cap(w.buf) - len(w.buf)
		if room > len(p) {
			room = len(p)
		}
		w.buf = append(w.buf, p[:room]...)
		p = p[room:]
		if len(w.buf) == cap(w.buf) {
			w.enc.chunk(w.buf)
			w.buf = w.buf[:0]
		}
	}
	w.size += int64(n)
	if w.enc.err != nil {
		return 0, &InjectError{StepWrite, w.enc.err}
	}
	return n, nil
}

// Commit ends the message with env and makes it durable: the record and a
// seal are written, the file is flushed (fdatasync), renamed into seg/,
// and seg/ is flushed so that the new name survives a crash too. Only then
// does it return nil, and only then may the caller say the message is
// accepted. On error the file is removed and the message is not in the
// queue. (A crash between the rename and the directory flush leaves the
// message queued or not, never partial: the file was whole before its
// name appeared.)
func (w *MessageWriter) Commit(env envelope.Envelope) error {
	if w.bufs == nil {
		return &InjectError{StepWrite, errWriterDone}
	}
	w.enc.chunk(w.buf)
	w.enc.finish(env.Stored())
	if w.enc.err == nil {
		_, w.enc.err = w.bw.Write(sealRecord(1))
	}
	if w.enc.err == nil {
		w.enc.err = w.bw.Flush()
	}
	w.release()
	if w.enc.err != nil {
		err := w.enc.err
		w.Abort()
		return &InjectError{StepWrite, err}
	}
	if err := fdatasync(w.f); err != nil {
		w.Abort()
		return &InjectError{StepSync, err}
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		w.Abort()
		return &InjectError{StepSync, err}
	}
	w.f = nil
	final := w.q.path(dirSeg, w.id.String())
	if err := renameNoReplace(w.path, final); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The ID is taken: the shared clock was behind (a power cut
			// lost its page while the system clock had stepped back).
			// Never replace a queued message; the caller retries.
			w.q.clock.Seed(w.id)
			w.Abort()
			return &InjectError{StepCreate, fmt.Errorf("queue id %s is taken: %w", w.id, err)}
		}
		w.Abort()
		return &InjectError{StepSync, err}
	}
	w.path = final
	if err := syncDir(filepath.Dir(final)); err != nil {
		w.Abort()
		return &InjectError{StepSync, err}
	}
	w.q.Pull()
	return nil
}

// Abort gives the message up and removes its file. Should the removal fail,
// the file is cut to nothing, so no reader can see a message in it; what is
// left the runner removes by age.
func (w *MessageWriter) Abort() {
	w.release()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Truncate(w.path, 0)
	}
}

// renameNoReplace renames from to to unless to exists (EEXIST). Where the
// filesystem lacks RENAME_NOREPLACE, a hard link does the same check.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	if err := os.Link(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}

// fdatasync flushes f's data and the metadata needed to read it back.
// XXX: after a failed fdatasync Linux may mark the pages clean while the
// data never reached the disk; callers treat the whole write as failed and
// never retry the flush to call it good.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}
