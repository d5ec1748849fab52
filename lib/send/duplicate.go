package send

import (
	"errors"

	"gw/lib/deliver"
	"gw/lib/queue"
)

// A delivery whose final dot went out and that got no reply to it may
// have delivered the message: the remote may have taken it and answered
// into a connection that was already lost, or gw-send may have died
// before it recorded the answer. Trying again is right (a message is
// never lost for fear of a duplicate) but the administrator must be told:
// gw-send logs "possible_duplicate" for each recipient, whether it saw the
// connection go (afterDot) or found in the journal at start that its
// predecessor stopped in between (afterCrash).

// possibleDuplicate is a temporary failure after the final dot.
type possibleDuplicate struct{ error }

func (p possibleDuplicate) Error() string {
	return p.error.Error() + " (possible duplicate: no reply after the final dot)"
}
func (p possibleDuplicate) Unwrap() error   { return p.error }
func (p possibleDuplicate) Temporary() bool { return true }

// afterDot marks err, a recipient's result of a delivery whose final dot
// was sent or about to be (dot), as a possible duplicate when it is not
// a server's reply: the connection failed, timed out or was aborted while
// the reply was awaited.
func afterDot(dot bool, err error) error {
	var rp *deliver.Reply
	if !dot || err == nil || errors.As(err, &rp) {
		return err
	}
	return possibleDuplicate{err}
}

// dotSent records in the journal, before the final dot of job j goes out,
// that it is going out to the recipients rcpts, those the server accepted
// at RCPT (queue.Runner.DotSent). The ones it refused never get the
// message, so a crash before their outcome is recorded makes them no
// possible duplicates: they are tried again and answered as before.
func (s *Sender) dotSent(j *job, rcpts []int) {
	if err := s.r.DotSent(j.id, rcpts); err != nil {
		s.log.Warning("journal", "qid", j.id, "err", err)
	}
}

// logDuplicate logs recipient rc's outcome o when it is a possible
// duplicate.
func (s *Sender) logDuplicate(j *job, rc queue.Recipient, o outcome) {
	var pd possibleDuplicate
	if errors.As(o.err, &pd) {
		s.log.Warning("possible_duplicate", "qid", j.id, "rcpt", rc.Address, "host", o.hostName(), "reason", pd.error.Error())
	}
}

// afterCrash finds the recipients of m that the journal says a final dot
// went out to with no reply recorded after: gw-send stopped between the
// two. Each is logged as a possible duplicate and recorded as deferred,
// an attempt counted, due at once as any recipient whose outcome a crash
// lost: waiting would not undo a duplicate, only delay a message the
// remote may not have. The record also ends the dot record's reign.
func (s *Sender) afterCrash(m *queue.Message) {
	t := s.now()
	found := false
	for i, rc := range m.Recipients {
		if !rc.DotSent || rc.State != queue.Pending {
			continue
		}
		reason := "gw-send stopped after the final dot, before it recorded the reply"
		s.log.Warning("possible_duplicate", "qid", m.ID, "rcpt", rc.Address, "reason", reason)
		next := t
		// 4.3.0: gw's own system stopped, not the remote's connection.
		o := queue.Outcome{Source: queue.FromGW, Status: "4.3.0", Text: reason, Stage: string(deliver.StageDot),
			DotSent: true, Note: "possible duplicate"}
		if err := s.r.Deferred(m.ID, i, next, o); err != nil {
			s.log.Warning("journal", "qid", m.ID, "rcpt", rc.Address, "err", err)
			continue
		}
		m.Recipients[i].NextTry = next
		m.Recipients[i].Attempts++
		m.Recipients[i].DotSent = false
		found = true
	}
	if found {
		if err := s.r.Sync(); err != nil {
			s.log.Alert("sync", "qid", m.ID, "err", err)
		}
	}
}
