package queue

import "time"

// Postpone records that pending recipient i of message id waits, without
// an attempt of its own, until next for the reason given: its destination
// is backed off after another message's attempt failed. No attempt is
// counted; the record lets gw-qstat show when the recipient will be tried
// and why it waits, which the runner otherwise knows only in memory.
func (r *Runner) Postpone(id ID, i int, next time.Time, o Outcome) error {
	return r.updateRecipient(id, i, false, func(rc *Recipient) {
		rc.NextTry, rc.Outcome = next, o
	})
}
