package qmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Conn is a client connection that pipelines packages: Send writes a
// package without waiting for the responses to earlier ones, and a reader
// goroutine hands each response to its package in order. Any number of
// goroutines may Send on one Conn.
type Conn struct {
	c       net.Conn
	timeout time.Duration

	wmu sync.Mutex // one package on the wire at a time
	bw  *bufio.Writer

	mu      sync.Mutex
	pending []*Pending // sent, not fully answered; oldest first
	err     error      // set once: the connection is broken
	idle    time.Time  // since when nothing is pending
}

// Pending is a package sent and waiting for its responses.
type Pending struct {
	n    int // recipients: responses expected
	resp []Response
	err  error
	done chan struct{}
}

// Response is one recipient's answer.
type Response struct {
	Code byte   // 'K' accepted, 'Z' temporary failure, 'D' permanent failure
	Text string // the rest, for the log and the bounce
}

// ErrBroken reports a connection that failed; the packages without all
// their responses have an unknown fate: a temporary failure.
var ErrBroken = errors.New("qmtp connection broken")

// Dial connects to addr ("host:port"). timeout bounds the wait for each
// response and each write.
func Dial(ctx context.Context, addr string, connectTimeout, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: connectTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(c, timeout), nil
}

// NewConn runs the client side of QMTP on c.
func NewConn(c net.Conn, timeout time.Duration) *Conn {
	q := &Conn{c: c, timeout: timeout, bw: bufio.NewWriterSize(c, 64<<10), idle: time.Now()}
	go q.readLoop()
	return q
}

// Send writes one package: the message (size bytes from body, stored form
// with LF line ends, sent with encoding #2), the sender and the
// recipients. The message must be exactly size bytes: a body that fails or
// is short breaks the connection, so no receiver takes a part for a whole.
func (q *Conn) Send(sender string, rcpts []string, size int64, body io.Reader) (*Pending, error) {
	if len(rcpts) == 0 {
		return nil, errors.New("qmtp: a package needs a recipient") // it would get no response
	}
	p := &Pending{n: len(rcpts), done: make(chan struct{})}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if err := q.Err(); err != nil {
		return nil, err
	}
	q.c.SetWriteDeadline(q.deadline())
	hdr := strconv.AppendInt(nil, size+1, 10)
	q.bw.Write(append(hdr, ':', '\n'))
	// Queue p before its bytes can reach the server, so the reader finds
	// it when the answers come.
	q.mu.Lock()
	q.pending = append(q.pending, p)
	q.c.SetReadDeadline(q.deadline()) // under mu: readLoop sets it too
	q.mu.Unlock()
	m, err := io.CopyN(q.bw, body, size)
	if err == nil {
		var buf []byte
		buf = append(buf, ',')
		buf = Append(buf, sender)
		var list []byte
		for _, r := range rcpts {
			list = Append(list, r)
		}
		buf = Append(buf, string(list))
		q.bw.Write(buf)
		err = q.bw.Flush()
	} else if errors.Is(err, io.EOF) {
		err = fmt.Errorf("message shorter (%d bytes) than its size %d", m, size)
	}
	if err != nil {
		q.fail(fmt.Errorf("%w: %v", ErrBroken, err))
		return nil, err
	}
	return p, nil
}

// Wait returns the responses, one a recipient in order, or the error that
// broke the connection first.
func (p *Pending) Wait(ctx context.Context) ([]Response, error) {
	select {
	case <-p.done:
		return p.resp, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Err returns the error that broke the connection, or nil.
func (q *Conn) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// InFlight returns the number of packages waiting for responses, and
// since when none has been (zero time when some are).
func (q *Conn) InFlight() (int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) > 0 {
		return len(q.pending), time.Time{}
	}
	return 0, q.idle
}

// Close closes the connection; packages still waiting fail.
func (q *Conn) Close() error {
	q.fail(fmt.Errorf("%w: closed", ErrBroken))
	return nil
}

func (q *Conn) deadline() time.Time {
	if q.timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(q.timeout)
}

// fail breaks the connection and fails every package still waiting.
func (q *Conn) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	ps := q.pending
	q.pending = nil
	q.mu.Unlock()
	q.c.Close()
	for _, p := range ps {
		p.err = err
		close(p.done)
	}
}

// readLoop reads responses and gives them to the oldest package. While
// nothing is pending a read may wait without limit (the server closes an
// idle connection); with packages pending each response must come within
// the timeout.
func (q *Conn) readLoop() {
	br := bufio.NewReaderSize(q.c, 4096)
	for {
		q.mu.Lock()
		waiting := len(q.pending) > 0
		if waiting {
			q.c.SetReadDeadline(q.deadline())
		} else {
			q.c.SetReadDeadline(time.Time{})
		}
		q.mu.Unlock()
		if _, err := br.Peek(1); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				q.mu.Lock()
				waiting = len(q.pending) > 0
				q.mu.Unlock()
				if !waiting {
					continue // a package was sent after the deadline was set
				}
			}
			q.fail(fmt.Errorf("%w: %v", ErrBroken, err))
			return
		}
		b, _, err := ReadString(br, MaxResponse, MaxResponse)
		if err == nil && (len(b) == 0 || b[0] != 'K' && b[0] != 'Z' && b[0] != 'D') {
			err = fmt.Errorf("%w: response %q", ErrSyntax, b)
		}
		if err != nil {
			q.fail(fmt.Errorf("%w: %v", ErrBroken, err))
			return
		}
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.mu.Unlock()
			q.fail(fmt.Errorf("%w: response %q to no package", ErrBroken, b))
			return
		}
		p := q.pending[0]
		p.resp = append(p.resp, Response{Code: b[0], Text: string(b[1:])})
		if len(p.resp) == p.n {
			q.pending = q.pending[1:]
			if len(q.pending) == 0 {
				q.idle = time.Now()
			}
			close(p.done)
		}
		q.mu.Unlock()
	}
}
