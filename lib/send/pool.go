package send

import (
	"context"
	"sync"
	"time"

	"gw/lib/deliver"
	"gw/lib/route"
)

// Limits of connection reuse, as Postfix's connection cache: a session
// that finished a message waits IdleLimit for the next message to its
// destination, and is not reused once older than AgeLimit (a long-lived
// connection would pin a destination to one of its hosts).
const (
	IdleLimit = 2 * time.Second
	AgeLimit  = 300 * time.Second
)

// pool keeps the sessions that finished a message and may carry another,
// by destination. A job takes one before it dials. Idle sessions count
// against no concurrency limit; they are bounded instead: at most the
// per-destination limit for one destination and the overall limit in all.
// Safe for concurrent use: jobs take and give back from their goroutines.
type pool struct {
	mu   sync.Mutex
	idle map[string][]*pooled
	n    int
}

// pooled is one idle session.
type pooled struct {
	sess deliver.Session
	// cancel ends the session's context: a session outlives the job that
	// dialled it, so each job ties its own end to cancel while it uses
	// the session (see Sender.carry).
	cancel context.CancelFunc
	host   route.Host
	opened time.Time
	idle   time.Time // since when it waits
	uses   int       // messages it carried
}

// close ends the session politely and lets its context go.
func (ps *pooled) close() {
	ps.sess.Close()
	ps.cancel()
}

func newPool() *pool { return &pool{idle: map[string][]*pooled{}} }

// get takes the most recently used idle session to dest that is within
// both limits at now.
func (p *pool) get(dest string, now time.Time) *pooled {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.idle[dest]
	for len(line) > 0 {
		ps := line[len(line)-1]
		line = line[:len(line)-1]
		p.n--
		if now.Sub(ps.idle) < IdleLimit && now.Sub(ps.opened) < AgeLimit {
			p.store(dest, line)
			return ps
		}
		go ps.close()
	}
	p.store(dest, line)
	return nil
}

func (p *pool) store(dest string, line []*pooled) {
	if len(line) == 0 {
		delete(p.idle, dest)
	} else {
		p.idle[dest] = line
	}
}

// put keeps ps for the next message to dest, or closes it when the pool
// is full or the session is too old.
func (p *pool) put(dest string, ps *pooled, now time.Time, perDest, overall int) {
	p.mu.Lock()
	if now.Sub(ps.opened) >= AgeLimit || len(p.idle[dest]) >= perDest || p.n >= overall {
		p.mu.Unlock()
		ps.close()
		return
	}
	ps.idle = now
	p.idle[dest] = append(p.idle[dest], ps)
	p.n++
	p.mu.Unlock()
}

// expire closes the sessions idle for IdleLimit at now, in the background
// (QUIT waits for the server's answer).
func (p *pool) expire(now time.Time) {
	p.mu.Lock()
	var old []*pooled
	for dest, line := range p.idle {
		keep := line[:0]
		for _, ps := range line {
			if now.Sub(ps.idle) >= IdleLimit {
				old = append(old, ps)
			} else {
				keep = append(keep, ps)
			}
		}
		p.n -= len(line) - len(keep)
		p.store(dest, keep)
	}
	p.mu.Unlock()
	for _, ps := range old {
		go ps.close()
	}
}

// nextExpiry returns when the first idle session reaches IdleLimit, and
// false when none is idle: the runner's loop sleeps until then rather than
// look at the pool on a short tick.
func (p *pool) nextExpiry() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	found := false
	for _, line := range p.idle {
		for _, ps := range line {
			if at := ps.idle.Add(IdleLimit); !found || at.Before(first) {
				first, found = at, true
			}
		}
	}
	return first, found
}

// closeAll closes every idle session, waiting for the QUITs at most
// wait: the process is about to exit, which drops what is left.
func (p *pool) closeAll(wait time.Duration) {
	p.mu.Lock()
	all := p.idle
	p.idle, p.n = map[string][]*pooled{}, 0
	p.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, line := range all {
		for _, ps := range line {
			wg.Add(1)
			go func() { defer wg.Done(); ps.close() }()
		}
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
}

// size returns the number of idle sessions.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
