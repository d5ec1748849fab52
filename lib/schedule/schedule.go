// Package schedule holds gw-send's timing decisions: when a deferred
// recipient is tried again, and which destinations may take another
// connection now — the overall and per-destination concurrency limits and
// the backoff of a destination that fails as a whole.
package schedule

import (
	"math"
	"time"
)

// RemoteSkip is qmail-send's chanskip for remote deliveries: attempts
// fall at (20k)^2 seconds after arrival (400 s, 1600 s, 1 h, …).
const RemoteSkip = 20

// NextRetry returns when a recipient of a message that arrived at arrival
// and failed temporarily at now is tried again: qmail-send's quadratic
// schedule, arrival + (floor(sqrt(now-arrival)) + skip)^2 seconds.
func NextRetry(arrival, now time.Time, skip int) time.Time {
	age := now.Sub(arrival).Seconds()
	if age < 0 {
		age = 0
	}
	n := math.Floor(math.Sqrt(age)) + float64(skip)
	return arrival.Add(time.Duration(n*n) * time.Second)
}

// Kind is how a destination's deliveries use connections.
type Kind int

// Kinds of destination.
const (
	// Connection: each delivery holds a connection of its own while it
	// runs (SMTP, LMTP).
	Connection Kind = iota
	// Pipelined: deliveries share the process's connections to the
	// destination, up to Limits.PipelineDepth in flight on each (QMTP).
	Pipelined
)

// Limits are the concurrency settings. The overall limit counts
// connections: a delivery to a Connection destination is one; the
// deliveries to a Pipelined destination count as the connections they
// fill, one for each PipelineDepth of them (rounded up).
type Limits struct {
	Overall       int           // concurrencyremote: connections in all
	PerDest       int           // concurrencydest: deliveries (connections) to one Connection destination
	PerPipelined  int           // concurrencyqmtp: deliveries in flight to one Pipelined destination
	PipelineDepth int           // deliveries a pipelined connection carries at once (at least 1)
	BackoffMin    time.Duration // first backoff of a failed destination
	BackoffMax    time.Duration // backoff doubles up to this
}

// PerDestFor returns the per-destination limit of a destination of kind
// k: PerPipelined for a Pipelined one (PerDest when that is unset),
// PerDest otherwise.
func (l Limits) PerDestFor(k Kind) int {
	if k == Pipelined && l.PerPipelined > 0 {
		return l.PerPipelined
	}
	return l.PerDest
}

// connections returns how many connections active deliveries to a
// destination of kind k count for in the overall limit.
func (l Limits) connections(k Kind, active int) int {
	if k != Pipelined || active == 0 {
		return active
	}
	depth := max(l.PipelineDepth, 1)
	return (active + depth - 1) / depth
}

// Dests tracks the destinations in use. Not safe for concurrent use: the
// scheduler's loop owns it.
type Dests struct {
	Limits
	active int // deliveries under way
	conns  int // the connections they count for
	m      map[string]*Dest
}

// Dest is one destination's state.
type Dest struct {
	Kind     Kind // as of its latest Start
	Active   int
	Failures int       // consecutive connection-level failures
	Until    time.Time // backed off until then
	LastErr  string
}

// NewDests returns an empty table.
func NewDests(l Limits) *Dests { return &Dests{Limits: l, m: map[string]*Dest{}} }

// SetLimits replaces the limits (control files re-read).
func (d *Dests) SetLimits(l Limits) {
	d.Limits = l
	d.conns = 0
	for _, st := range d.m {
		d.conns += d.connections(st.Kind, st.Active)
	}
}

// Active returns the number of deliveries under way.
func (d *Dests) Active() int { return d.active }

// Get returns name's state, or nil if it has none.
func (d *Dests) Get(name string) *Dest { return d.m[name] }

// Connections returns the connections the deliveries under way count
// for in the overall limit.
func (d *Dests) Connections() int { return d.conns }

// Full reports whether the overall limit is reached.
func (d *Dests) Full() bool { return d.conns >= d.Overall }

// CanStart reports whether a delivery to name, a destination of kind k,
// may start at now: under both limits and not backed off. A destination
// that failed gets one probe at a time until a delivery to it succeeds.
// Another delivery to a Pipelined destination whose connections have
// room counts for no new connection, so it may start when the overall
// limit is reached.
func (d *Dests) CanStart(name string, k Kind, now time.Time) bool {
	st := d.m[name]
	if st == nil {
		return d.conns+1 <= d.Overall
	}
	if now.Before(st.Until) {
		return false
	}
	limit := d.PerDestFor(k)
	if st.Failures > 0 {
		limit = 1
	}
	if st.Active >= limit {
		return false
	}
	more := d.connections(k, st.Active+1) - d.connections(st.Kind, st.Active)
	return d.Overall > 0 && d.conns+more <= d.Overall
}

// BackedOff reports whether name is backed off at now, and until when.
func (d *Dests) BackedOff(name string, now time.Time) (time.Time, bool) {
	st := d.m[name]
	if st == nil || !now.Before(st.Until) {
		return time.Time{}, false
	}
	return st.Until, true
}

// Start counts a delivery to name, a destination of kind k.
func (d *Dests) Start(name string, k Kind) {
	st := d.m[name]
	if st == nil {
		st = &Dest{}
		d.m[name] = st
	}
	d.conns -= d.connections(st.Kind, st.Active)
	st.Kind = k
	st.Active++
	d.active++
	d.conns += d.connections(st.Kind, st.Active)
}

// Done ends a delivery to name. reachable says whether the destination
// answered (whatever it said about the message); when it did not, the
// destination is backed off as a whole. Deliveries that were started
// before a backoff and fail during it do not lengthen it: backedOff is
// true only for the failure that started a backoff.
func (d *Dests) Done(name string, reachable bool, now time.Time, errText string) (backedOff bool) {
	st := d.m[name]
	if st == nil {
		panic("schedule.Dests.Done: destination " + name + " was not started")
	}
	d.conns -= d.connections(st.Kind, st.Active)
	st.Active--
	d.active--
	d.conns += d.connections(st.Kind, st.Active)
	if reachable {
		st.Failures, st.Until, st.LastErr = 0, time.Time{}, ""
	} else if !now.Before(st.Until) {
		st.Failures++
		st.LastErr = errText
		st.Until = now.Add(d.backoff(st.Failures))
		backedOff = true
	}
	if st.Active == 0 && st.Failures == 0 {
		delete(d.m, name)
	}
	return backedOff
}

func (d *Dests) backoff(failures int) time.Duration {
	b := d.BackoffMin
	for i := 1; i < failures && b < d.BackoffMax; i++ {
		b *= 2
	}
	if b > d.BackoffMax {
		b = d.BackoffMax
	}
	return b
}

// Reset forgets every backoff (SIGALRM: try everything now).
func (d *Dests) Reset() {
	for name, st := range d.m {
		st.Until = time.Time{}
		if st.Active == 0 {
			delete(d.m, name)
		}
	}
}

// Earliest returns the earliest end of a backoff after now, if any.
func (d *Dests) Earliest(now time.Time) (time.Time, bool) {
	var t time.Time
	for _, st := range d.m {
		if st.Until.After(now) && (t.IsZero() || st.Until.Before(t)) {
			t = st.Until
		}
	}
	return t, !t.IsZero()
}
