package state

import (
	"sync"
	"time"
)

// Memory is a Store in the process's memory: the local counting limits
// fall back to when a shared store is down, and the store of a
// standalone listener that names none. It never fails.
type Memory struct {
	Now func() time.Time // nil: time.Now

	mu     sync.Mutex
	counts map[string]window
	vals   map[string]value
	ops    int
}

type window struct {
	n   int64
	end time.Time
}

type value struct {
	val []byte
	end time.Time
}

// sweepEvery is how many operations pass between removals of what has
// expired, so a long-running listener's memory stays bounded by the
// clients of one window.
const sweepEvery = 4096

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Count implements Store.
func (m *Memory) Count(key string, d time.Duration) (int64, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	if m.counts == nil {
		m.counts = map[string]window{}
	}
	w := m.counts[key]
	if !now.Before(w.end) {
		w = window{end: now.Add(d)}
	}
	w.n++
	m.counts[key] = w
	return w.n, w.end, nil
}

// Get implements Store.
func (m *Memory) Get(key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok || !m.now().Before(v.end) {
		return nil, false, nil
	}
	return v.val, true, nil
}

// Put implements Store.
func (m *Memory) Put(key string, val []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	if m.vals == nil {
		m.vals = map[string]value{}
	}
	m.vals[key] = value{append([]byte(nil), val...), now.Add(ttl)}
	return nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }

func (m *Memory) sweep(now time.Time) {
	if m.ops++; m.ops%sweepEvery != 0 {
		return
	}
	for k, w := range m.counts {
		if !now.Before(w.end) {
			delete(m.counts, k)
		}
	}
	for k, v := range m.vals {
		if !now.Before(v.end) {
			delete(m.vals, k)
		}
	}
}
