package send

import (
	"time"

	"gw/lib/queue"
	"gw/lib/schedule"
)

// expireWaiting deals with the jobs waiting for a destination that just
// failed again. A job whose recipients have each had an attempt of their
// own that failed temporarily, and whose message has outlived
// queuelifetime, fails now: behind a destination that lets one probe
// through a backoff it might not get another try for longer than the
// lifetime allows. A recipient never tried is not failed for its age,
// however old the message looks (the clock may just have jumped): it
// keeps its place in the line and gets its own attempt. The others are
// postponed to the end of the new backoff.
func (s *Sender) expireWaiting(dest string) {
	line := s.waiting[dest]
	keep := line[:0]
	t := s.now()
	postponed := false
	for _, j := range line {
		m, err := s.r.Message(j.id)
		if err == nil && t.Sub(m.Arrival) > s.config().Lifetime && triedAll(&m, j.rcpts) {
			j.expired = true
			s.run(func() { s.deliver(j); s.done <- j }) // no network: see deliver
			continue
		}
		keep = append(keep, j)
		postponed = s.postpone(j, t) || postponed
	}
	s.waiting[dest] = keep
	if postponed {
		s.flushPostponed()
	}
}

// triedAll reports whether every one of recipients rcpts of m has had an
// attempt of its own (a pending recipient with attempts failed
// temporarily each time).
func triedAll(m *queue.Message, rcpts []int) bool {
	for _, i := range rcpts {
		if m.Recipients[i].Attempts == 0 {
			return false
		}
	}
	return true
}

// postpone records, for job j waiting in a backed-off destination's
// line, the end of the backoff as its recipients' next try and the
// destination's last error as theirs, so that gw-qstat shows when and
// why they wait. A destination that is only busy changes nothing. The
// caller writes the records with flushPostponed; they reach the disk only
// with the next Sync: losing them costs only what gw-qstat shows.
func (s *Sender) postpone(j *job, t time.Time) bool {
	until, off := s.dests.BackedOff(j.dest, t)
	if !off {
		return false
	}
	reason, ok := s.destOut[j.dest]
	if !ok {
		reason = queue.Outcome{Source: queue.FromGW, Status: "4.4.1", Text: "destination backed off"}
	}
	for _, i := range j.rcpts {
		if err := s.r.Postpone(j.id, i, until, reason); err != nil {
			s.log.Warning("journal", "qid", j.id, "err", err)
		}
	}
	return true
}

// flushPostponed writes the records of the postpone calls before it,
// with one write for all of them. It waits for a journal flush under way,
// so the loop calls it only when something was postponed.
func (s *Sender) flushPostponed() {
	if err := s.r.Flush(); err != nil {
		s.log.Warning("journal", "err", err)
	}
}

// liftWaiting ends the backoff of every destination in whose line a job
// of message id waits, so that gw-qctl retry means now: those jobs were
// planned already, and planning the message again would skip them.
func (s *Sender) liftWaiting(id queue.ID) {
	for dest, line := range s.waiting {
		for _, j := range line {
			if j.id == id {
				s.dests.Lift(dest)
				break
			}
		}
	}
}

// boundNextTry brings every next try of m's pending recipients that lies
// further than backoffmax ahead back to backoffmax from now, in m and in
// the journal (no attempt counted): the clock stepped back since it was
// recorded. Comparing against a bound taken from now without recording it
// would move the bound along with the clock, and the recipient would
// never come due.
func (s *Sender) boundNextTry(m *queue.Message) {
	t, most := s.now(), s.config().BackoffMax
	for i, rc := range m.Recipients {
		if rc.State != queue.Pending {
			continue
		}
		next := schedule.Capped(rc.NextTry, t, most)
		if next.Equal(rc.NextTry) {
			continue
		}
		if err := s.r.Reschedule(m.ID, i, next); err != nil {
			s.log.Warning("journal", "qid", m.ID, "rcpt", rc.Address, "err", err)
			continue
		}
		m.Recipients[i].NextTry = next
		s.log.Info("next_try_bounded", "qid", m.ID, "rcpt", rc.Address, "was", rc.NextTry.UTC().Format(time.RFC3339),
			"next", next.UTC().Format(time.RFC3339))
	}
}
