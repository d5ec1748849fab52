package scan

import (
	"sync"
	"time"
)

// A connection to the next hop costs the next hop a whole session (accept,
// its client checks, greeting, EHLO): the proxy keeps a few idle between
// messages, as Postfix's smtp client keeps its connection cache. Few and
// short-lived, so the next hop's per-client limits are not held by idle
// sessions.
const (
	maxIdleHops = 8
	hopIdleFor  = 10 * time.Second
)

// hopConn is one SMTP client connection to the next hop.
type hopConn struct {
	c     *hopClient
	since time.Time // idle since
}

// hopPool holds idle next-hop connections, newest last; its zero value is
// empty and ready.
type hopPool struct {
	mu   sync.Mutex
	idle []*hopConn
}

// get returns the newest idle connection not idle too long, closing the
// stale ones, or nil.
func (p *hopPool) get() *hopConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		h := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(h.since) < hopIdleFor {
			return h
		}
		h.c.close()
	}
	return nil
}

// put keeps h for the next message, or says QUIT when the pool is full.
func (p *hopPool) put(h *hopConn) {
	h.since = time.Now()
	p.mu.Lock()
	if len(p.idle) < maxIdleHops {
		p.idle = append(p.idle, h)
		h = nil
	}
	p.mu.Unlock()
	if h != nil {
		h.c.quit()
	}
}
