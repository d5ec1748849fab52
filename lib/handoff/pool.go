package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qq"
)

// Pool keeps connections to gw-queued's socket open between messages.
type Pool struct {
	sock   string
	waitUp time.Duration // how long a dial waits for gw-queued to come back; 0: upWait
	mu     sync.Mutex
	idle   []idleClient
}

// upWait is how long Begin waits for a gw-queued that is not listening
// (a supervised restart takes about a second) before the listener
// answers 451: the client waits a moment instead of coming back later.
const upWait = 5 * time.Second

type idleClient struct {
	c     *inject.Client
	since time.Time
}

// maxIdle bounds how long a connection waits in the pool. gw-queued drops
// a connection idle for 20 minutes (lib/inject idleTimeout); staying well
// under that keeps a message from going out on a connection being closed.
const maxIdle = 5 * time.Minute

// maxPooled bounds the idle connections kept.
const maxPooled = 256

var (
	poolsMu sync.Mutex
	pools   = map[string]*Pool{}
)

// PoolFor returns the process's pool for the socket at sock.
func PoolFor(sock string) *Pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	p := pools[sock]
	if p == nil {
		p = &Pool{sock: sock}
		pools[sock] = p
	}
	return p
}

// get takes the connection put back last, when it is young enough and
// in step, else a new one. The kernel is not asked whether gw-queued
// closed it meanwhile (Stale): that was a system call a message, and a
// dead connection shows itself when the message goes: a held message is
// sent again on a fresh one (Commit), a streaming one is checked before
// its first chunk (Write).
func (p *Pool) get() (*inject.Client, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(ic.since) < maxIdle && !ic.c.OutOfStep() {
			p.mu.Unlock()
			return ic.c, nil
		}
		ic.c.Close()
	}
	p.mu.Unlock()
	return p.dial()
}

// dial connects to gw-queued, waiting up to waitUp for one that is not
// listening (a supervised restart) to come back.
func (p *Pool) dial() (*inject.Client, error) {
	wait := p.waitUp
	if wait == 0 {
		wait = upWait
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := inject.Dial(p.sock)
		if err == nil || !notListening(err) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// notListening reports a dial that found no gw-queued: its socket gone or
// nobody accepting on it, as while it restarts.
func notListening(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

func (p *Pool) put(c *inject.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxPooled {
		c.Close()
		return
	}
	p.idle = append(p.idle, idleClient{c, time.Now()})
}

// replayLimit is the size up to which a message is held in memory until
// Commit and sent whole then. Such a message can be sent again: when its
// connection turns out dead before gw-queued read the envelope's end
// (EPIPE, ECONNRESET), gw-queued cannot have queued it (it commits only
// after the final NUL), so it goes once more over a fresh connection. A
// larger message streams to gw-queued while the client sends it, in
// chunks of about replayLimit.
const replayLimit = 64 << 10

// bufPool holds the buffers messages are gathered in: one a message under
// way, of replayLimit and a listener's write or so.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Begin takes a connection — a pooled one that still looks alive (Stale),
// else a new one, so a gw-queued that is down is known before DATA's 354 —
// and holds the message until it is over replayLimit or committed.
func (p *Pool) Begin(env envelope.Envelope) (Tx, error) { return p.BeginSession("", env) }

// BeginSession is Begin with the session sid named to gw-queued for its
// queued line (inject.Client.Session).
func (p *Pool) BeginSession(sid string, env envelope.Envelope) (Tx, error) {
	c, err := p.get()
	if err != nil {
		return nil, fmt.Errorf("%w: gw-queued at %s: %v", errStarted, p.sock, err)
	}
	c.Session(sid)
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return &poolTx{pool: p, c: c, buf: b, env: env, sid: sid}, nil
}

type result struct {
	inject.Reply
	err error
}

// poolTx gathers the message in buf and sends it from there, with no copy
// and no goroutine: whole at Commit while it fits replayLimit, else a
// chunk each time buf is over replayLimit (streaming), the last one with
// the envelope.
type poolTx struct {
	pool      *Pool
	c         *inject.Client
	env       envelope.Envelope
	sid       string        // the listener session, for gw-queued's log
	buf       *bytes.Buffer // what is not sent yet
	streaming bool          // chunks went out: the message cannot be sent again
	werr      error         // the first failure to send: gw-queued went away

	qid string // once committed, when gw-queued said it
}

// QID returns the queue id gw-queued committed the message under, once
// Commit returned 0; "" from a gw-queued of protocol version 1.
func (t *poolTx) QID() string { return t.qid }

// SetEnvelope replaces the envelope given to Begin (handoff.Late).
func (t *poolTx) SetEnvelope(env envelope.Envelope) { t.env = env }

func (t *poolTx) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > replayLimit {
		if !t.streaming && t.c.Stale() {
			// Once a chunk is out the message cannot go again: the
			// connection gw-queued may have closed while it sat in the
			// pool is replaced first, while nothing is sent.
			t.c.Close()
			t.c, t.werr = t.pool.dial()
			if t.werr == nil {
				t.c.Session(t.sid)
			}
		}
		t.streaming = true
		if t.werr == nil {
			t.werr = t.c.WriteChunk(t.buf.Bytes())
		}
		t.buf.Reset()
	}
	return len(p), nil
}

// nothingQueued reports an error that shows gw-queued never read the
// envelope's end, so cannot have queued the message.
func nothingQueued(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

func (t *poolTx) Commit() (int, error) {
	var r result
	msg := t.buf.Bytes()
	switch {
	case t.werr != nil:
		r.err = t.werr
	case t.streaming:
		r.Reply, r.err = t.c.End(msg, t.env)
	default:
		r.Reply, r.err = t.c.InjectBytes(msg, t.env)
		if r.err != nil && nothingQueued(r.err) {
			// XXX one retry only: a second dead connection in a row means
			// gw-queued is going away, and the client's retry is right.
			t.c.Close()
			c, err := t.pool.dial() // a restarting gw-queued is waited for, as Begin would
			if err != nil {
				t.c = nil
				r.err = fmt.Errorf("%w; again: %v", r.err, err)
			} else {
				t.c = c
				c.Session(t.sid)
				r.Reply, r.err = c.InjectBytes(msg, t.env)
			}
		}
	}
	t.release()
	if r.err != nil {
		if t.c != nil {
			t.c.Close()
		}
		return qq.ReadError, fmt.Errorf("gw-queued at %s: %w", t.pool.sock, r.err)
	}
	t.pool.put(t.c)
	if r.Code != qq.OK {
		return r.Code, fmt.Errorf("gw-queued refused with %d: %s", r.Code, qq.Reply(r.Code))
	}
	t.qid = r.QID
	return r.Code, nil
}

// release gives the buffer back; a buffer grown far past a message's
// chunk by one huge write is left to the collector.
func (t *poolTx) release() {
	if t.buf.Cap() <= 4*replayLimit {
		bufPool.Put(t.buf)
	}
	t.buf = nil
}

// Abort abandons the message. One still held was never sent: the
// connection goes back to the pool untouched. One streaming is stopped
// mid-stream: the connection is closed before the end-of-message chunk,
// so gw-queued queues nothing.
func (t *poolTx) Abort() {
	t.release()
	if !t.streaming {
		t.pool.put(t.c)
		return
	}
	if t.c != nil { // nil: its replacement could not be dialled (Write)
		t.c.Close()
	}
}
