package schedule

import "time"

// Capped returns the time a recipient whose recorded next try is next is
// due when seen at now: next, or now+most when that is earlier. The
// quadratic schedule counts from the arrival, and the journal's next try
// was computed by the clock of its time: after the clock stepped back (or
// for a message stamped by a clock that ran ahead) either may lie days
// away. Between attempts the schedule's gaps stay under an hour for a
// week-old message, so backoffmax is the bound no honest wait exceeds.
func Capped(next, now time.Time, most time.Duration) time.Time {
	if most > 0 && next.After(now.Add(most)) {
		return now.Add(most)
	}
	return next
}

// Lift ends name's backoff now, keeping its count of failures, so a
// delivery to it may start at once while it remains one probe at a time
// (gw-qctl retry: the administrator asked for an attempt now).
func (d *Dests) Lift(name string) {
	if st := d.m[name]; st != nil {
		st.Until = time.Time{}
	}
}
