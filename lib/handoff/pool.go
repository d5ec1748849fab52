package handoff

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qq"
)

// Pool keeps connections to gw-queued's socket open between messages.
type Pool struct {
	sock string
	mu   sync.Mutex
	idle []idleClient
}

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

func (p *Pool) get() (*inject.Client, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(ic.since) < maxIdle {
			p.mu.Unlock()
			return ic.c, nil
		}
		ic.c.Close()
	}
	p.mu.Unlock()
	return inject.Dial(p.sock)
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

// Begin takes a connection and starts sending the message on it while the
// caller writes.
//
// XXX a pooled connection whose server went away is found out only when
// the message is sent: that message gets a temporary failure (the client
// retries) and the connection is dropped. lib/inject's Client does not
// expose its socket, so it cannot be probed before use.
func (p *Pool) Begin(env envelope.Envelope) (Tx, error) {
	c, err := p.get()
	if err != nil {
		return nil, fmt.Errorf("%w: gw-queued at %s: %v", errStarted, p.sock, err)
	}
	pr, pw := io.Pipe()
	t := &poolTx{pool: p, c: c, pw: pw, w: bufio.NewWriterSize(pw, 64<<10), done: make(chan result, 1), env: env}
	go func() {
		// t.env is read after pr's EOF, that is after Commit closed pw:
		// the pipe orders SetEnvelope before this read.
		code, err := c.InjectLate(pr, func() envelope.Envelope { return t.env })
		pr.CloseWithError(errAborted) // unblock a writer the injector left
		t.done <- result{code, err}
	}()
	return t, nil
}

type result struct {
	code int
	err  error
}

type poolTx struct {
	pool *Pool
	c    *inject.Client
	pw   *io.PipeWriter
	w    *bufio.Writer
	done chan result
	werr error
	env  envelope.Envelope
}

// SetEnvelope replaces the envelope given to Begin (handoff.Late).
func (t *poolTx) SetEnvelope(env envelope.Envelope) { t.env = env }

var errAborted = errors.New("message aborted")

func (t *poolTx) Write(p []byte) (int, error) {
	if t.werr == nil {
		if _, err := t.w.Write(p); err != nil {
			t.werr = err
		}
	}
	return len(p), nil
}

func (t *poolTx) Commit() (int, error) {
	if t.werr == nil {
		t.werr = t.w.Flush()
	}
	t.pw.Close()
	r := <-t.done
	if r.err != nil {
		t.c.Close()
		return qq.ReadError, fmt.Errorf("gw-queued at %s: %w", t.pool.sock, r.err)
	}
	t.pool.put(t.c)
	if r.code != qq.OK {
		return r.code, fmt.Errorf("gw-queued refused with %d: %s", r.code, qq.Reply(r.code))
	}
	return r.code, nil
}

// Abort stops the message mid-stream: the injector's read fails, and the
// connection is closed before the end-of-message frame, so gw-queued
// queues nothing.
func (t *poolTx) Abort() {
	t.pw.CloseWithError(errAborted)
	<-t.done
	t.c.Close()
}
