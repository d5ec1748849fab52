package tcpserver

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Clients keep connections open between messages: gw-send reuses an SMTP
// or QMTP connection for the next message to the same place. At shutdown
// such a session has nothing under way, yet it would hold the listener
// for its whole grace period. So a session tells the listener when it
// waits for the client's next request (Idle), and shutdown ends those
// waits at once; sessions in the middle of a message are left to finish.

// drainConn is the connection a Listener hands to Session.
type drainConn struct {
	net.Conn
	mu       sync.Mutex
	idle     bool // the session waits for the client's next request
	stopping bool // the listener is shutting down
	closing  bool // the idle wait was cut short: the session must end
}

// SetReadDeadline keeps a wait that shutdown cut short cut: the
// session's own per-read deadline would otherwise put it back.
func (c *drainConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		t = time.Now()
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *drainConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// SyscallConn lets a session look at the socket itself (gw-smtpd's
// pregreet check peeks at it without waiting).
func (c *drainConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// cutIfIdle ends an idle wait during shutdown, unless the client has
// already sent its next request: that one is served (the client spoke
// before it could know), and the session is cut at its next wait. c.mu
// is held.
func (c *drainConn) cutIfIdle() bool {
	if c.idle && c.stopping && !c.closing && !c.pending() {
		c.closing = true
		c.Conn.SetReadDeadline(time.Now())
	}
	return c.closing
}

// pending reports whether the client's bytes wait in the socket.
func (c *drainConn) pending() bool { return Pending(c.Conn) }

// Pending reports whether bytes from the peer wait unread in c's socket,
// without reading them or waiting. It takes no read lock, so it may run
// while another goroutine is blocked reading c. False when c is not a
// socket.
func Pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}

func (c *drainConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	c.cutIfIdle()
}

// Idle says whether the session on c now waits for its client's next
// request (between messages, nothing accepted and unanswered). It reports
// whether the session must end because the listener is shutting down: the
// session's next read then fails at once with a timeout error, and the
// session should say goodbye where the protocol has words for it (SMTP's
// 421). Connections not handed out by a Listener (tcpserver's stdio) are
// never ended.
func Idle(c net.Conn, idle bool) (closing bool) {
	dc, ok := c.(*drainConn)
	if !ok {
		return false
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.idle = idle
	return dc.cutIfIdle()
}

// Closing reports whether shutdown cut short the session's wait on c: a
// read that failed then is the shutdown, not the client.
func Closing(c net.Conn) bool {
	dc, ok := c.(*drainConn)
	if !ok {
		return false
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.closing
}

// track adds a session's connection to those stopped at shutdown; the
// returned func removes it.
func (l *Listener) track(c *drainConn) func() {
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[*drainConn]struct{}{}
	}
	l.conns[c] = struct{}{}
	stopping := l.stopping
	l.mu.Unlock()
	if stopping {
		c.stop()
	}
	return func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
	}
}

// stopAll marks every session's connection as shutting down.
func (l *Listener) stopAll() {
	l.mu.Lock()
	l.stopping = true
	conns := make([]*drainConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.stop()
	}
}
