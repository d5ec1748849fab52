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

// Limits are the concurrency settings.
type Limits struct {
	Overall    int           // concurrencyremote: connections in all
	PerDest    int           // concurrencydest: connections to one destination
	BackoffMin time.Duration // first backoff of a failed destination
	BackoffMax time.Duration // backoff doubles up to this
}

// Dests tracks the destinations in use. Not safe for concurrent use: the
// scheduler's loop owns it.
type Dests struct {
	Limits
	active int
	m      map[string]*Dest
}

// Dest is one destination's state.
type Dest struct {
	Active   int
	Failures int       // consecutive connection-level failures
	Until    time.Time // backed off until then
	LastErr  string
}

// NewDests returns an empty table.
func NewDests(l Limits) *Dests { return &Dests{Limits: l, m: map[string]*Dest{}} }

// Active returns the number of deliveries under way.
func (d *Dests) Active() int { return d.active }

// Get returns name's state, or nil if it has none.
func (d *Dests) Get(name string) *Dest { return d.m[name] }

// Full reports whether the overall limit is reached.
func (d *Dests) Full() bool { return d.active >= d.Overall }

// CanStart reports whether a delivery to name may start at now: under both
// limits and not backed off. A destination that failed gets one probe at
// a time until a delivery to it succeeds.
func (d *Dests) CanStart(name string, now time.Time) bool {
	if d.Full() {
		return false
	}
	st := d.m[name]
	if st == nil {
		return true
	}
	if now.Before(st.Until) {
		return false
	}
	limit := d.PerDest
	if st.Failures > 0 {
		limit = 1
	}
	return st.Active < limit
}

// BackedOff reports whether name is backed off at now, and until when.
func (d *Dests) BackedOff(name string, now time.Time) (time.Time, bool) {
	st := d.m[name]
	if st == nil || !now.Before(st.Until) {
		return time.Time{}, false
	}
	return st.Until, true
}

// Start counts a delivery to name.
func (d *Dests) Start(name string) {
	st := d.m[name]
	if st == nil {
		st = &Dest{}
		d.m[name] = st
	}
	st.Active++
	d.active++
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
	st.Active--
	d.active--
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
