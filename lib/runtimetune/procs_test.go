package runtimetune

import (
	"runtime"
	"testing"
	"time"
)

// TestGovernorStep walks a daemon through a day: idle, a burst that
// needs more than a CPU, a lull too short to go back, a quiet spell
// long enough, and load that one processor carries.
func TestGovernorStep(t *testing.T) {
	g := &governor{most: 4, procs: 1}
	ms := time.Millisecond
	for i, c := range []struct {
		what          string
		used, elapsed time.Duration
		procs         int
		next          time.Duration
	}{
		{"idle: looked at once a second", 2 * ms, time.Second, 1, idleTick},
		{"10 msg/s at 2 ms each: one processor, looked at more often", 20 * ms, time.Second, 1, busyTick},
		{"just under the busy mark", 174 * ms, 250 * ms, 1, busyTick},
		{"a CPU's worth at one processor: all of them", 240 * ms, 250 * ms, 4, busyTick},
		{"busy at four", 600 * ms, 250 * ms, 4, busyTick},
		{"a lull of 4 s", 100 * ms, 4 * time.Second, 4, busyTick},
		{"busy again: the lull's count starts over", 200 * ms, 250 * ms, 4, busyTick},
		{"quiet 4.75 s", 0, 4750 * ms, 4, busyTick},
		{"between the marks: not quiet", 125 * ms, 250 * ms, 4, busyTick},
		{"quiet 4.75 s again", 0, 4750 * ms, 4, busyTick},
		{"quiet 5 s on end: back to one", 0, 250 * ms, 1, idleTick},
		{"a clock that did not move: nothing to divide by", 5 * ms, 0, 1, idleTick},
	} {
		procs, next := g.step(c.used, c.elapsed)
		if procs != c.procs || next != c.next {
			t.Fatalf("step %d (%s): used %v of %v: %d processors, next look in %v; want %d, %v",
				i, c.what, c.used, c.elapsed, procs, next, c.procs, c.next)
		}
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
