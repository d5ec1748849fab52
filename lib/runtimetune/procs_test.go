package runtimetune

import (
	"math"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGovernorStep walks a daemon through a day: idle, low rates, a
// burst whose goroutines wait for the one processor, a lull too short
// to go back, a quiet spell long enough, a burst of CPU.
func TestGovernorStep(t *testing.T) {
	g := &governor{most: 4, procs: 1}
	ms := time.Millisecond
	q := 250 * ms
	for i, c := range []struct {
		what                  string
		used, waited, elapsed time.Duration
		procs                 int
		next                  time.Duration
	}{
		{"idle: looked at less often", 2 * ms, 0, time.Second, 1, idleTick},
		{"10 msg/s at 2 ms each: one processor, looked at more often", 20 * ms, 0, time.Second, 1, busyTick},
		{"100 msg/s at 0.6 ms each, nothing waiting", 15 * ms, 250 * time.Microsecond, q, 1, busyTick},
		{"little work, but waiting on a loaded machine: not worth a switch", 10 * ms, 50 * ms, q, 1, busyTick},
		{"a relay at full rate: goroutines wait on the one processor", 30 * ms, 40 * ms, q, 4, busyTick},
		{"at four: busy", 100 * ms, 10 * ms, q, 4, busyTick},
		{"a lull nearly a quiet spell long", 20 * ms, 0, quietSpell - q, 4, busyTick},
		{"busy again: the lull's count starts over", 200 * ms, 0, q, 4, busyTick},
		{"quiet a spell but a look", 0, 0, quietSpell - q, 4, busyTick},
		{"between the marks: not quiet", 10 * ms, 0, q, 4, busyTick},
		{"quiet a spell but a look again", 0, 0, quietSpell - q, 4, busyTick},
		{"quiet a whole spell on end: back to one", 0, 0, q, 1, idleTick},
		{"just under a busy CPU, nothing waiting", 174 * ms, 0, q, 1, busyTick},
		{"a CPU's worth at one processor: all of them", 180 * ms, 0, q, 4, busyTick},
		{"a clock that did not move: nothing to divide by", 5 * ms, 5 * ms, 0, 4, busyTick},
	} {
		procs, next := g.step(load{used: c.used, waited: c.waited, elapsed: c.elapsed})
		if procs != c.procs || next != c.next {
			t.Fatalf("step %d (%s): used %v, waited %v of %v: %d processors, next look in %v; want %d, %v",
				i, c.what, c.used, c.waited, c.elapsed, procs, next, c.procs, c.next)
		}
	}
}

// TestWaited: the runtime's histogram of waits summed at each bucket's
// lower bound; the unbounded ends count nothing.
func TestWaited(t *testing.T) {
	h := &metrics.Float64Histogram{
		Counts:  []uint64{5, 2, 3, 1},
		Buckets: []float64{math.Inf(-1), 0.001, 0.002, 0.004, math.Inf(1)},
	}
	// the 5 under 1 ms have no lower bound; 2 at 1 ms, 3 at 2 ms, 1 at 4
	if got, want := waited(h), 12*time.Millisecond; got != want {
		t.Errorf("waited = %v, want %v", got, want)
	}
}

// TestExplicitGOMAXPROCSIsKept: a GOMAXPROCS in the environment is the
// sysadmin's: no governor, and the runtime's setting untouched.
func TestExplicitGOMAXPROCSIsKept(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMAXPROCS" {
				return v
			}
			return ""
		}
	}
	for _, v := range []string{"2", "1", "16", "bogus"} {
		if g := newGovernor(env(v)); g != nil {
			t.Errorf("GOMAXPROCS=%s: a governor was made", v)
		}
		if got := runtime.GOMAXPROCS(0); got != before {
			t.Errorf("GOMAXPROCS=%s: the runtime's processors went from %d to %d", v, before, got)
		}
	}

	runtime.GOMAXPROCS(3)
	g := newGovernor(env(""))
	if g == nil || g.most != 3 || g.procs != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("no GOMAXPROCS given, 3 processors: governor %+v at %d processors; want most 3, at 1", g, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(1)
	if g := newGovernor(env("")); g != nil {
		t.Errorf("one processor only: a governor was made: %+v", g)
	}
}

// TestCPUUsed: the figure the governor divides grows with work done
// (on a loaded machine the spinning gets the CPU when it gets it).
func TestCPUUsed(t *testing.T) {
	before := cpuUsed()
	for deadline := time.Now().Add(time.Minute); cpuUsed()-before < 20*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("a minute of spinning counted %v of CPU", cpuUsed()-before)
		}
	}
}

// TestMeterReads: the runtime's figures are there to be read, and a
// goroutine kept from the one processor is seen waiting.
func TestMeterReads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m := newMeter()
	before := m.read()
	for deadline := time.Now().Add(time.Minute); ; {
		done := make(chan bool)
		go func() { done <- true }() // ready, and kept waiting by the loop below
		for end := time.Now().Add(2 * time.Millisecond); time.Now().Before(end); {
		}
		<-done
		if l := m.read().since(before); l.waited > 0 && l.used > 0 && l.elapsed > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute of goroutines kept waiting: %+v", m.read().since(before))
		}
	}
}
