package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// clamd's session mode (clamd(8), IDSESSION): after zIDSESSION the
// connection stays open for further commands, numbered from 1, and each
// reply begins "N: " with the number of the request it answers. clamd
// ends an idle session after its IdleTimeout (30 s by default): an idle
// session is kept here for less, and a few at most.
const (
	maxIdleClamd = 16
	clamdIdleFor = 10 * time.Second
)

// clamdSession is one connection in session mode.
type clamdSession struct {
	conn net.Conn
	r    *bufio.Reader
	n    int // requests sent
}

// scanInSession scans on an idle session, or on a new one. A session
// clamd ended while it sat idle (clamd restarted, or its IdleTimeout)
// fails before any reply: the message then goes again, from its start,
// on a fresh connection. Any failure closes the session it happened on.
func (c *Clamd) scanInSession(ctx context.Context, r io.Reader, size int64) (ClamdResult, error) {
	if s, ok := c.idle.get(clamdIdleFor, (*clamdSession).end); ok {
		res, err, retry := s.scan(ctx, r, size)
		if err == nil {
			c.idle.put(s, maxIdleClamd, (*clamdSession).end)
			return res, nil
		}
		s.conn.Close()
		sk, seekable := r.(io.Seeker)
		if !retry || !seekable || ctx.Err() != nil {
			return res, fmt.Errorf("clamd %s: %w", c.Addr, err)
		}
		if _, err := sk.Seek(0, io.SeekStart); err != nil {
			return res, fmt.Errorf("clamd %s: %w", c.Addr, err)
		}
	}
	conn, err := dial(ctx, c.Addr)
	if err != nil {
		return ClamdResult{}, fmt.Errorf("clamd %s: %w", c.Addr, err)
	}
	s := &clamdSession{conn: conn, r: bufio.NewReaderSize(conn, maxClamdReply)}
	res, err, _ := s.scan(ctx, r, size)
	if err != nil {
		conn.Close()
		return res, fmt.Errorf("clamd %s: %w", c.Addr, err)
	}
	c.idle.put(s, maxIdleClamd, (*clamdSession).end)
	return res, nil
}

// scan runs one zINSTREAM in the session. retry reports a failure of
// the connection before clamd answered anything, which a fresh one may
// not have.
func (s *clamdSession) scan(ctx context.Context, r io.Reader, size int64) (res ClamdResult, err error, retry bool) {
	if dl, ok := ctx.Deadline(); ok {
		s.conn.SetDeadline(dl)
	}
	head := "zINSTREAM\x00"
	if s.n == 0 {
		head = "zIDSESSION\x00" + head
	}
	s.n++
	werr, err := writeInstream(s.conn, head, r, size)
	if err != nil {
		return res, err, false
	}
	line, err := s.r.ReadSlice(0)
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return res, errors.New("reply too long"), false
	case err != nil && werr != nil:
		return res, werr, len(line) == 0
	case err != nil:
		return res, fmt.Errorf("reading the reply: %w", err), len(line) == 0
	}
	// The reply must answer this request: a session out of step with
	// clamd would give one message another's verdict.
	rest, ok := strings.CutPrefix(string(line), strconv.Itoa(s.n)+": ")
	if !ok {
		return res, fmt.Errorf("reply %q is not to request %d", truncate(strings.TrimRight(string(line), "\x00"), 200), s.n), false
	}
	res, err = ParseClamdReply(rest)
	return res, err, false
}

// end closes the session, telling clamd (END) without waiting.
func (s *clamdSession) end() {
	s.conn.SetDeadline(time.Now().Add(time.Second))
	s.conn.Write([]byte("zEND\x00"))
	s.conn.Close()
}
