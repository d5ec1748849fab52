package scan

import (
	"sync"
	"time"
)

// idlePool keeps connections of one kind idle between messages, newest
// last, so that the next message skips a connect and its server a whole
// session; clamd's sessions and the next hop's SMTP connections are kept
// so. Its zero value is empty and ready.
type idlePool[C any] struct {
	mu   sync.Mutex
	idle []idleConn[C]
}

type idleConn[C any] struct {
	c     C
	since time.Time // idle since
}

// get returns the newest connection idle for less than idleFor, and
// whether there was one; those idle longer are given to stale, as their
// server may have closed them meanwhile.
func (p *idlePool[C]) get(idleFor time.Duration, stale func(C)) (c C, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(ic.since) < idleFor {
			return ic.c, true
		}
		stale(ic.c)
	}
	return c, false
}

// put keeps c for a later message while fewer than most are idle, else
// gives it to surplus.
func (p *idlePool[C]) put(c C, most int, surplus func(C)) {
	p.mu.Lock()
	if len(p.idle) < most {
		p.idle = append(p.idle, idleConn[C]{c, time.Now()})
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	surplus(c)
}
