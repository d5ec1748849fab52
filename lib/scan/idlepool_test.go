package scan

import (
	"slices"
	"testing"
	"time"
)

// TestIdlePool: the newest idle connection goes first; one the pool has
// no room for goes to surplus, one idle too long to stale, and none is
// handed out twice.
func TestIdlePool(t *testing.T) {
	var p idlePool[int]
	var stale, surplus []int
	toStale := func(c int) { stale = append(stale, c) }
	toSurplus := func(c int) { surplus = append(surplus, c) }
	for c := 1; c <= 3; c++ {
		p.put(c, 2, toSurplus)
	}
	if !slices.Equal(surplus, []int{3}) {
		t.Fatalf("surplus %v, want [3]: the pool holds two", surplus)
	}
	if c, ok := p.get(time.Hour, toStale); !ok || c != 2 {
		t.Fatalf("get = %d, %v; want the newest, 2", c, ok)
	}
	time.Sleep(2 * time.Millisecond)
	if c, ok := p.get(time.Millisecond, toStale); ok {
		t.Fatalf("get = %d; want none: 1 was idle too long", c)
	}
	if !slices.Equal(stale, []int{1}) {
		t.Fatalf("stale %v, want [1]", stale)
	}
	if _, ok := p.get(time.Hour, toStale); ok {
		t.Fatal("an empty pool gave a connection")
	}
}
