package send

import (
	"math"
	"time"

	"gw/lib/bounce"
	"gw/lib/mailbox"
	"gw/lib/queue"
	"gw/lib/schedule"
)

// warnNow reports whether a deferral at now of recipient rc (its state
// before this attempt) of a message that arrived at arrival is the one
// that warns the sender, with control/delaywarning set to after (0: off).
//
// The decision needs no record of its own in the journal: it is made on
// the retry schedule's buckets. A deferral at age a warns when
// floor(sqrt(a))^2 >= after, and the recipient's previous next try tells
// the bucket of its previous attempt (next = arrival + (floor(sqrt(a')) +
// skip)^2), so a warning goes out once, at the first deferral in a bucket
// at or past after, even across restarts. The warning is thus late by
// less than 2*sqrt(after)+1 seconds (4 min for 4 h): on qmail's schedule,
// attempts fall on bucket bounds anyway.
//
// XXX: gw-qctl retry with gw-send stopped rewrites the next try, which
// may make a later deferral warn a second time.
func warnNow(after time.Duration, arrival, now time.Time, rc queue.Recipient) bool {
	if after <= 0 {
		return false
	}
	bucket := func(age time.Duration) float64 { return math.Floor(math.Sqrt(max(age.Seconds(), 0))) }
	b := bucket(now.Sub(arrival))
	if b*b < after.Seconds() {
		return false
	}
	if rc.Attempts == 0 || rc.NextTry.IsZero() {
		return true
	}
	prev := math.Round(math.Sqrt(max(rc.NextTry.Sub(arrival).Seconds(), 0))) - schedule.RemoteSkip
	return prev*prev < after.Seconds()
}

// warn sends the sender of m a delay notification (RFC 3464, Action:
// delayed) for recipients, still queued. Null-sender mail gets none, nor
// does a sender no path can carry (gw-queue would refuse the notice).
func (s *Sender) warn(m *queue.Message, recipients []queue.Recipient) error {
	if m.Sender == "" || m.Sender == DoubleBounceSender || mailbox.Check(m.Sender) != nil {
		return nil
	}
	cfg := s.config()
	rep := bounce.Report{ReportingMTA: cfg.Me, From: cfg.BounceFrom, To: m.Sender, QueueID: m.ID.String(),
		Arrival: m.Arrival, Date: s.now(), EnvID: m.DSN.EnvID}
	until := m.Arrival.Add(cfg.Lifetime)
	for _, rc := range recipients {
		r := dsnRecipient(rc, "delayed")
		r.WillRetryUntil = until
		rep.Recipients = append(rep.Recipients, r)
	}
	return s.report(m, &rep, "", "delay_warning", len(recipients), false)
}
