package runtimetune

import (
	"runtime"
	"strconv"
	"syscall"
	"time"

	"gw/lib/logline"
)

// The governor's marks, as shares of one CPU over an interval. A daemon
// at one processor that used busyShare of a CPU is held back by it:
// it goes to all of the processors the runtime gives it. One that used
// less than quietShare for quietSpell on end fits in one processor
// again with room to spare (spinning threads inflate the figure at
// several): it goes back. The gap between the two keeps it from
// switching to and fro.
const (
	busyShare  = 0.7
	quietShare = 0.4
	quietSpell = 5 * time.Second
)

// How often the governor looks: every busyTick while the daemon works,
// every idleTick while it used less than idleShare, so that an idle
// daemon wakes once a second for it (the monitor kept awake wakes it
// 100 times) and one that starts to work is at all of its processors
// within idleTick and busyTick.
const (
	busyTick  = 250 * time.Millisecond
	idleTick  = time.Second
	idleShare = 0.01
)

// governor sets GOMAXPROCS from the CPU the process used. Changing it
// stops the world for a few microseconds (4 µs here, median of 200), a
// cost paid at most once in quietSpell.
type governor struct {
	most  int           // the processors the runtime gave the program at start
	procs int           // in force
	quiet time.Duration // time on end under quietShare at most
}

// newGovernor returns the governor of a program whose environment is
// getenv, at one processor; nil where there is nothing to govern: the
// sysadmin set GOMAXPROCS (the runtime took it, or, for a value it
// refuses, its own default: either way not gw's to change), or the
// runtime gives the program one CPU only.
func newGovernor(getenv func(string) string) *governor {
	if getenv("GOMAXPROCS") != "" {
		return nil
	}
	// The runtime's own choice: the CPUs of the affinity mask, or fewer
	// under a cgroup's CPU limit. Once set here, the runtime no longer
	// follows a change of that limit: a restart reads it again.
	most := runtime.GOMAXPROCS(0)
	if most <= 1 {
		return nil
	}
	runtime.GOMAXPROCS(1)
	return &governor{most: most, procs: 1}
}

// step takes the CPU the process used over the last interval, elapsed
// long, and returns the processors for the next one and how long that
// interval is to be.
func (g *governor) step(used, elapsed time.Duration) (procs int, next time.Duration) {
	share := 0.0
	if elapsed > 0 {
		share = float64(used) / float64(elapsed)
	}
	switch {
	case g.procs == 1 && share >= busyShare:
		g.procs, g.quiet = g.most, 0
	case g.procs > 1 && share < quietShare:
		g.quiet += elapsed
		if g.quiet >= quietSpell {
			g.procs, g.quiet = 1, 0
		}
	default:
		g.quiet = 0
	}
	if g.procs == 1 && share < idleShare {
		return g.procs, idleTick
	}
	return g.procs, busyTick
}

// run governs for the life of the program.
func (g *governor) run(log *logline.Logger) {
	last, lastAt := cpuUsed(), time.Now()
	next := idleTick
	for {
		time.Sleep(next)
		used, at := cpuUsed(), time.Now()
		was := g.procs
		var procs int
		procs, next = g.step(used-last, at.Sub(lastAt))
		if procs != was {
			runtime.GOMAXPROCS(procs)
			share := float64(used-last) / float64(at.Sub(lastAt))
			log.Info("procs", "from", was, "to", procs, "cpu", strconv.FormatFloat(share, 'f', 2, 64))
		}
		last, lastAt = used, at
	}
}

// cpuUsed is the CPU time the process has used, all of its threads, in
// user and kernel mode.
func cpuUsed() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
