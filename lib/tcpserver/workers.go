package tcpserver

import (
	"net"
	"sync/atomic"
)

// A session's goroutine grows its stack to what a session needs (an SMTP
// session goes well past the first 8 KiB), and every doubling copies the
// stack frame by frame. A goroutine started for each connection starts
// small and grows again: under smtp-source that was 6% of gw-smtpd's
// user time. So a goroutine whose session ended waits for the listener's
// next connection instead of exiting, and a busy listener's sessions
// start on stacks already grown. At most maxIdleWorkers wait; the others
// exit, so a burst of sessions leaves no crowd behind.
const maxIdleWorkers = 64

// workers are one Serve call's session goroutines.
type workers struct {
	l    *Listener
	next chan net.Conn // unbuffered: taken only by a goroutine waiting for it
	idle atomic.Int32  // goroutines waiting on next
}

func newWorkers(l *Listener) *workers {
	return &workers{l: l, next: make(chan net.Conn)}
}

// serve runs c's session on a waiting goroutine, or on a new one when
// none waits.
func (w *workers) serve(c net.Conn) {
	select {
	case w.next <- c:
	default:
		go w.run(c)
	}
}

// run serves c, then the connections given to it while it waits, until
// enough others wait or the listener is closed (stop).
func (w *workers) run(c net.Conn) {
	for {
		w.l.handle(c)
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		var ok bool
		c, ok = <-w.next
		w.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// stop ends the waiting goroutines; serve must not be called after it.
func (w *workers) stop() { close(w.next) }
