package inject

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/qq"
	"gw/lib/queue"
)

// The socket protocol of gw-queued (gw-queued.8 documents it): for each
// message the client sends the message as chunks, each a 4-byte
// big-endian length and that many bytes, a zero length to end it, then the
// envelope exactly as on qmail-queue's fd 1 (F…\0T…\0\0). The server
// answers one byte, qmail-queue's exit code, only once the message is
// durable or refused, and in version 2 after a 0 the queue id
// (protocol.go); the connection then carries the next message. A client
// aborts a message by closing the connection: nothing of it is queued, as
// with a truncated envelope.
const maxSocketChunk = 1 << 20

// DefaultBudget is the memory budget of a Server whose Budget is 0.
const DefaultBudget = 32 << 20

// Limits on a session, so a stuck client holds nothing forever. A message
// takes at most queue.DeathAfter in all (deadlineReader), as with
// gw-queue's alarm; the runner's Ossified outlasts both.
const (
	idleTimeout = 20 * time.Minute
)

// Server accepts injections on a unix socket and commits them in groups.
type Server struct {
	Queue     *queue.Queue
	Committer *queue.Committer
	Log       *logline.Logger
	Program   string // name in the trace line
	// Budget bounds the message bytes all sessions hold in memory until
	// their group commit, whatever the number of sessions; 0 means
	// DefaultBudget. A message that finds the budget spent is moved to a
	// segment of its own, as one over queue.MaxIncoming is: it costs a
	// file and a flush of its own, never an unbounded heap.
	Budget int64

	wg   sync.WaitGroup
	held atomic.Int64 // bytes of incoming messages held in memory

	mu      sync.Mutex
	closing bool
	idle    map[*net.UnixConn]bool // sessions waiting between messages
}

// Shutdown makes Serve's sessions end: those waiting between messages at
// once, those inside a message after its reply. Close the listener too.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.idle {
		c.SetReadDeadline(time.Now())
	}
}

// setIdle records whether session c is between messages; it returns false
// when the server is shutting down and the session should end.
func (s *Server) setIdle(c *net.UnixConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle == nil {
		s.idle = make(map[*net.UnixConn]bool)
	}
	if idle {
		s.idle[c] = true
	} else {
		delete(s.idle, c)
	}
	return !s.closing
}

// Serve accepts connections on l until it is closed, then waits for the
// sessions under way.
func (s *Server) Serve(l *net.UnixListener) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.wg.Wait()
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(c)
		}()
	}
}

// session serves one client connection, message after message.
func (s *Server) session(c *net.UnixConn) {
	defer c.Close()
	defer s.setIdle(c, false)
	uid, pid := peer(c)
	dr := &deadlineReader{c: c, fd: -1}
	// The read buffer is the session's only while it has bytes to read:
	// a listener keeps connections open between messages, and hundreds
	// of idle ones must not each hold one.
	var r *bufio.Reader
	defer func() {
		if r != nil {
			readerPool.Put(r)
		}
	}()
	version := byte(Version1) // until the client asks for more
	var out []byte
	for {
		// The wait's deadline is set before the session counts as idle,
		// so that Shutdown's, set on idle sessions, is the one that holds.
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		if !s.setIdle(c, true) {
			return
		}
		dr.giveUp = time.Time{}
		if r != nil && r.Buffered() == 0 {
			r.Reset(nil)
			readerPool.Put(r)
			r = nil
		}
		var err error
		if r == nil {
			r, err = dr.awaitMessage()
		} else {
			_, err = r.Peek(1) // the next message is there already
		}
		if !s.setIdle(c, false) || err != nil {
			return // shutting down, or the client is done (or gone)
		}
		start := time.Now()
		dr.giveUp = start.Add(queue.DeathAfter)
		if v, ok := s.hello(r); ok {
			version = min(v, Newest)
			if _, err := c.Write([]byte{version}); err != nil {
				return
			}
			continue
		}
		sid, err := s.sessionID(r, version)
		if err != nil {
			// A label that is not one: the client is not a gw listener of
			// this build, or is out of step; nothing of its message is read.
			s.Log.Warning("refused", "code", qq.BadEnvelope, "uid", uid, "pid", pid, "reply", qq.Reply(qq.BadEnvelope), "err", err)
			c.Write([]byte{qq.BadEnvelope})
			return
		}
		id, size, rcpts, err := s.message(r, dr, uid, pid)
		code := Code(err)
		if err != nil && errors.Is(err, errClientGone) {
			s.Log.Info("aborted", "uid", uid, "pid", pid, "reason", err)
			return
		}
		out = appendReply(out[:0], version, code, id.String())
		if _, werr := c.Write(out); werr != nil {
			// The client will not learn the outcome; if the message was
			// queued it stays queued (a duplicate if the client retries,
			// as with qmail-queue killed after its commit).
			s.Log.Warning("reply_lost", "qid", id, "uid", uid, "err", werr)
			return
		}
		if err != nil {
			s.Log.Warning("refused", "code", code, "uid", uid, "pid", pid, "reply", qq.Reply(code), "err", err)
			if code == qq.ReadError || code == qq.BadEnvelope || code == qq.AddressTooLong || code == qq.BadAddress {
				return // the stream is out of step
			}
			continue
		}
		kv := []any{"qid", id, "size", size, "rcpts", rcpts, "uid", uid, "pid", pid, "ms", time.Since(start).Milliseconds()}
		if sid != "" {
			kv = append(kv[:2:2], append([]any{"sid", sid}, kv[2:]...)...)
		}
		s.Log.Info("queued", kv...)
	}
}

// hello consumes a hello frame if one is next (at a message's start, where
// a version 1 client sends a chunk header), and returns the version the
// client asks for. A client that cannot send 4 bytes is left to message,
// which reports it.
func (s *Server) hello(r *bufio.Reader) (byte, bool) {
	b, err := r.Peek(4)
	if err != nil {
		return 0, false
	}
	v, ok := helloVersion(binary.BigEndian.Uint32(b))
	if !ok || v < Version1 {
		return 0, false
	}
	r.Discard(4)
	return v, true
}

// sessionID consumes a session frame if one is next, on a connection of
// version 3 (on an older one the frame is an oversized chunk, refused by
// message), and returns the session id it names: "" when there is none.
// An id that is not plain (PlainQID) is an error: whatever a client
// sends is checked before it reaches a log line.
func (s *Server) sessionID(r *bufio.Reader, version byte) (string, error) {
	if version < Version3 {
		return "", nil
	}
	b, err := r.Peek(4)
	if err != nil {
		return "", nil
	}
	n, ok := sessionLen(binary.BigEndian.Uint32(b))
	if !ok {
		return "", nil
	}
	r.Discard(4)
	if n == 0 || n > maxQIDLen {
		return "", fmt.Errorf("session frame of %d bytes", n)
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return "", fmt.Errorf("session frame cut short: %w", err)
	}
	if !PlainQID(string(id)) {
		return "", fmt.Errorf("session id %q is not letters and digits", string(id))
	}
	return string(id), nil
}

// errClientGone is a connection closed inside a message: an abort.
var errClientGone = errors.New("connection closed inside a message")

// message reads and commits one message from r, whose source is src.
// Small ones are held in memory, within the server's budget, and
// committed with others; one that outgrows queue.MaxIncoming, or finds
// the budget spent, is moved to a segment of its own and streamed.
//
// A queue error half way through the body (disk full) does not end the
// reading: the rest of the message and its envelope are read and dropped,
// and only then is the message refused. Answering at once would leave the
// rest of the body in the stream to be read as the next message, under an
// envelope of the sender's choosing.
func (s *Server) message(r *bufio.Reader, src io.Reader, uid, pid uint32) (queue.ID, int64, int, error) {
	in := s.Committer.NewIncoming(uid, pid)
	mem := &heldBytes{s: s}
	defer mem.release()
	defer in.Release() // Commit releases it first; this is for the others
	trace := Trace(s.Program, pid, uid, time.Now())
	mem.take(int64(len(trace)))
	io.WriteString(in, trace)
	var big *queue.MessageWriter
	defer func() {
		if big != nil { // given up before its commit
			big.Abort()
		}
	}()
	body := &refusingWriter{w: in}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, 0, 0, errClientGone
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			break
		}
		if n > maxSocketChunk {
			return 0, 0, 0, &readError{fmt.Errorf("chunk of %d bytes, over %d", n, maxSocketChunk)}
		}
		if big == nil && body.err == nil && (in.Size()+int64(n) > queue.MaxIncoming || !mem.take(int64(n))) {
			// Too large, or the budget is spent: a segment of its own.
			w, err := s.Queue.NewMessage(uid, pid)
			if err == nil {
				big, body.w = w, w
				_, err = in.WriteTo(w)
			}
			in.Release()
			mem.release()
			body.err = err
		}
		var err error
		if body.w == in && body.err == nil {
			// Held in memory: read into the message's blocks, with no
			// buffer in between once r's is drained.
			err = in.ReadChunk(straightReader{r, src}, int(n))
		} else {
			err = copyChunk(body, r, int(n))
		}
		if err != nil {
			return 0, 0, 0, errClientGone
		}
	}
	e, err := envelope.Read(r)
	if err != nil {
		if errors.Is(err, io.EOF) || isTruncated(err) {
			return 0, 0, 0, errClientGone
		}
		return 0, 0, 0, wrapRead(err)
	}
	if body.err != nil {
		return 0, 0, 0, body.err
	}
	if big != nil {
		w := big
		big = nil // Commit removes the file itself when it fails
		if err := w.Commit(e); err != nil {
			return 0, 0, 0, err
		}
		return w.ID(), w.Size(), len(e.Recipients), nil
	}
	if err := s.Committer.Commit(in, e); err != nil {
		return 0, 0, 0, err
	}
	return in.ID(), in.Size(), len(e.Recipients), nil
}

// heldBytes is one message's share of the server's memory budget.
type heldBytes struct {
	s *Server
	n int64
}

// take counts n more bytes held in memory, if the budget has room for
// them.
func (h *heldBytes) take(n int64) bool {
	budget := h.s.Budget
	if budget <= 0 {
		budget = DefaultBudget
	}
	if h.s.held.Add(n) > budget {
		h.s.held.Add(-n)
		return false
	}
	h.n += n
	return true
}

// release gives back what the message held: after its commit, or once it
// moved to a segment of its own.
func (h *heldBytes) release() {
	h.s.held.Add(-h.n)
	h.n = 0
}

// copyChunk passes the next n bytes of r to w straight from r's buffer:
// io.CopyN would allocate a buffer of its own for every chunk (garbage
// the size of the traffic) and copy the bytes twice.
func copyChunk(w io.Writer, r *bufio.Reader, n int) error {
	for n > 0 {
		b, err := r.Peek(min(n, r.Size()))
		if len(b) == 0 {
			return err
		}
		w.Write(b) // a refusingWriter: never fails
		r.Discard(len(b))
		n -= len(b)
	}
	return nil
}

// straightReader reads what r holds in its buffer, then from src, r's
// source, straight into the caller's slice: a message held in memory is
// read into its own blocks, not through r's buffer. The caller asks for
// no more than the chunk's bytes, so nothing past them leaves the
// connection behind r's back.
type straightReader struct {
	r   *bufio.Reader
	src io.Reader
}

func (s straightReader) Read(p []byte) (int, error) {
	if s.r.Buffered() > 0 {
		return s.r.Read(p)
	}
	return s.src.Read(p)
}

// refusingWriter passes a body to w until w fails, then keeps the first
// error and swallows the rest, so the reader goes on to the end of the
// message (see Server.message).
type refusingWriter struct {
	w   io.Writer
	err error
}

func (b *refusingWriter) Write(p []byte) (int, error) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
	return len(p), nil
}

// Abandoned reports a message its client abandoned, as qmail-queue's
// interface lets it: the envelope closed before its final NUL. Nothing
// is queued; it is no trouble of the queue's.
func Abandoned(err error) bool { return isTruncated(err) }

// isTruncated reports an envelope cut before its final NUL.
func isTruncated(err error) bool {
	var envErr *envelope.Error
	return errors.As(err, &envErr) && envErr.Code == qq.ReadError
}

// deadlineReader gives every read of a session a deadline, so that a
// client that stops sending cannot hold a session for ever: idleTimeout
// for each read, and giveUp (queue.DeathAfter after a message began, as
// gw-queue's alarm) for the whole message.
type deadlineReader struct {
	c      *net.UnixConn
	giveUp time.Time
	// fd, while awaitMessage tries a read, is the socket to read at once,
	// without waiting: the wait is awaitMessage's.
	fd int
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.fd >= 0 {
		n, err := unix.Read(d.fd, p)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return 0, errNothingYet
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
	dl := time.Now().Add(idleTimeout)
	if !d.giveUp.IsZero() && d.giveUp.Before(dl) {
		dl = d.giveUp
	}
	d.c.SetReadDeadline(dl)
	return d.c.Read(p)
}

// readerPool holds the read buffers of the sessions between messages.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// errNothingYet is a read of a client that has sent nothing yet.
var errNothingYet = errors.New("nothing to read yet")

// awaitMessage waits, until the read deadline the session set, for the
// client to send something or close, and returns a read buffer holding
// what it sent; the end, or an error, it returns as the error. A session
// holds no buffer while it waits: a listener keeps connections open
// between messages, and hundreds of idle ones must not each hold one. The
// buffer is taken only to try a read, and given back when there is
// nothing yet; the read that finds the message is the one that fills the
// buffer, with no peek before it (one system call a message fewer).
func (d *deadlineReader) awaitMessage() (*bufio.Reader, error) {
	raw, err := d.c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var r *bufio.Reader
	var rerr error
	werr := raw.Read(func(fd uintptr) bool {
		r = readerPool.Get().(*bufio.Reader)
		d.fd = int(fd)
		r.Reset(d)
		_, rerr = r.Peek(1)
		d.fd = -1
		if rerr != nil {
			r.Reset(nil)
			readerPool.Put(r)
			r = nil
		}
		return rerr != errNothingYet // else wait until the socket is readable
	})
	if werr != nil {
		return nil, werr
	}
	return r, rerr // bytes; or the end, or an error
}

// peer returns the uid and pid of the process at the other end of c, for
// the trace line; the kernel vouches for them (SO_PEERCRED).
func peer(c *net.UnixConn) (uid, pid uint32) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0
	}
	raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			uid, pid = cred.Uid, uint32(cred.Pid)
		}
	})
	return uid, pid
}

// Listen makes the unix socket at path, readable and writable by the
// owner and group only (mode), replacing a stale socket left by a dead
// server. Listeners that may inject belong to the socket's group.
func Listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server is listening", path)
		}
		os.Remove(path)
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
