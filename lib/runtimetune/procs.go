package runtimetune

import (
	"math"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"

	"gw/lib/logline"
)

// The governor's marks. At one processor a daemon is held back by it
// when it used busyShare of a CPU over an interval, or when its
// goroutines, ready to run, waited for the processor waitShare of the
// interval between them (summed): the one thread that runs Go code was
// in a system call (an fsync, a write) or descheduled by a loaded
// machine while the others had work. It then goes to all of the
// processors the runtime gives it, and back to one once it used less
// than quietShare of a CPU for quietSpell on end. activeShare keeps
// waits of a daemon that does next to nothing (a few messages a second
// on a loaded machine) from raising it, to fall back later.
//
// The marks are far from both ends: at 100 messages a second on the
// scanned path each daemon used 2 to 6 % of a CPU and its goroutines
// waited under 0.1 % of the time; at the relay bench's full rate, at
// one processor, gw-queued, gw-smtpd and gw-send used 6 to 12 % of a
// CPU and waited 10 to 65 % of the time, and ran at half the rate of
// two processors: they wait on one another and on fsync, not on a CPU.
const (
	busyShare   = 0.7
	waitShare   = 0.05
	activeShare = 0.05
	quietShare  = 0.03
	quietSpell  = 30 * time.Second
)

// How often the governor looks: every busyTick while the daemon works,
// every idleTick while it used less than idleShare, so that an idle
// daemon wakes twice a second for it (the monitor kept awake wakes it
// 100 times) and one that starts to work is at all of its processors
// within idleTick and busyTick. A burst of the smtpd bench (2000
// messages in under a second) ran at one processor all through with a
// look a second, and lost a third of its rate; a quiet spell of 5 s
// went back to one between bursts a few seconds apart.
const (
	busyTick  = 250 * time.Millisecond
	idleTick  = 500 * time.Millisecond
	idleShare = 0.01
)

// governor sets GOMAXPROCS from the CPU the process used and the time
// its goroutines waited for a processor. Changing it stops the world
// for a few microseconds (4 µs here, median of 200), paid at most once
// in quietSpell.
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

// load is what the process did over an interval elapsed long: the CPU
// it used and the time its goroutines spent ready to run, waiting for a
// processor (summed over goroutines).
type load struct {
	used, waited, elapsed time.Duration
}

func (l load) share(d time.Duration) float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(d) / float64(l.elapsed)
}

// step takes the load of the last interval and returns the processors
// for the next one and how long that interval is to be.
func (g *governor) step(l load) (procs int, next time.Duration) {
	cpu, wait := l.share(l.used), l.share(l.waited)
	switch {
	case g.procs == 1 && (cpu >= busyShare || cpu >= activeShare && wait >= waitShare):
		g.procs, g.quiet = g.most, 0
	case g.procs > 1 && cpu < quietShare:
		g.quiet += l.elapsed
		if g.quiet >= quietSpell {
			g.procs, g.quiet = 1, 0
		}
	default:
		g.quiet = 0
	}
	if g.procs == 1 && cpu < idleShare {
		return g.procs, idleTick
	}
	return g.procs, busyTick
}

// run governs for the life of the program.
func (g *governor) run(log *logline.Logger) {
	m := newMeter()
	last := m.read()
	next := idleTick
	for {
		time.Sleep(next)
		now := m.read()
		l := now.since(last)
		was := g.procs
		var procs int
		procs, next = g.step(l)
		if procs != was {
			runtime.GOMAXPROCS(procs)
			log.Info("procs", "from", was, "to", procs,
				"cpu", strconv.FormatFloat(l.share(l.used), 'f', 2, 64),
				"wait", strconv.FormatFloat(l.share(l.waited), 'f', 2, 64))
		}
		last = now
	}
}

// reading is the process's totals at one moment.
type reading struct {
	at           time.Time
	used, waited time.Duration
}

func (r reading) since(before reading) load {
	return load{used: r.used - before.used, waited: r.waited - before.waited, elapsed: r.at.Sub(before.at)}
}

// meter reads the totals.
type meter struct {
	sample []metrics.Sample
}

func newMeter() *meter {
	return &meter{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

func (m *meter) read() reading {
	metrics.Read(m.sample)
	r := reading{at: time.Now(), used: cpuUsed()}
	if v := m.sample[0].Value; v.Kind() == metrics.KindFloat64Histogram {
		r.waited = waited(v.Float64Histogram())
	}
	return r
}

// waited sums the runtime's histogram of the time goroutines spent
// ready to run before they ran, each at its bucket's lower bound (an
// underestimate by at most the buckets' width, an eighth here).
func waited(h *metrics.Float64Histogram) time.Duration {
	var sum float64
	for i, n := range h.Counts {
		if low := h.Buckets[i]; n > 0 && low > 0 && !math.IsInf(low, 0) {
			sum += float64(n) * low
		}
	}
	return time.Duration(sum * float64(time.Second))
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
