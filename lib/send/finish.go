package send

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"gw/lib/bounce"
	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/mailbox"
	"gw/lib/queue"
)

// DoubleBounceSender is qmail's envelope sender of a double bounce; a
// bounce of a message from it is dropped (qmail's "triple bounce").
const DoubleBounceSender = mailbox.DoubleBounce

// finish starts the end of message id, all of whose recipients are done:
// bounce what failed, then remove it.
func (s *Sender) finish(id queue.ID) {
	if _, busy := s.flight[id]; busy {
		return
	}
	j := &job{id: id, finishing: true}
	s.claimJob(j)
	s.run(func() {
		if err := s.bounceAndRemove(id); err != nil {
			j.lastErr = err.Error()
			s.log.Warning("finish", "qid", id, "err", err)
		}
		s.done <- j
	})
}

// bounceAndRemove injects the bounce (durably) before it removes the
// message, so a crash in between gives a duplicate bounce, never none.
func (s *Sender) bounceAndRemove(id queue.ID) error {
	m, err := s.r.Message(id)
	if err != nil {
		return nil
	}
	var failed []queue.Recipient
	delivered := 0
	for _, rc := range m.Recipients {
		switch rc.State {
		case queue.Failed:
			failed = append(failed, rc)
		case queue.Delivered:
			delivered++
		}
	}
	if notify := s.wantFailureNotice(&m, failed); len(notify) > 0 {
		if err := s.bounce(&m, notify); err != nil {
			return err
		}
	}
	// The message is still claimed by the finish job: Remove refuses a
	// claimed message, so let go just before.
	s.r.Unclaim(id)
	if err := s.r.Remove(id); err != nil {
		return err
	}
	if err := s.r.Sync(); err != nil {
		return err
	}
	s.log.Info("end", "qid", id, "delivered", delivered, "failed", len(failed))
	return nil
}

func (s *Sender) bounce(m *queue.Message, failed []queue.Recipient) error {
	cfg := s.config()
	if m.Sender == DoubleBounceSender {
		s.log.Warning("bounce_dropped", "qid", m.ID, "reason", "double bounce failed", "rcpts", len(failed))
		return nil
	}
	to, from, double := m.Sender, "", false
	// A sender no path can carry (stored by a program that did not
	// check) cannot be bounced to: as for the null sender, the report
	// goes to the postmaster as a double bounce.
	if m.Sender == "" || mailbox.Check(m.Sender) != nil {
		to, from, double = cfg.DoubleBounceTo, DoubleBounceSender, true
	}
	rep := bounce.Report{ReportingMTA: cfg.Me, From: cfg.BounceFrom, To: to, QueueID: m.ID.String(),
		Arrival: m.Arrival, Date: s.now(), Double: double, EnvID: m.DSN.EnvID}
	for _, rc := range failed {
		rep.Recipients = append(rep.Recipients, dsnRecipient(rc, "failed"))
	}
	kind := "bounce"
	if double {
		kind = "doublebounce"
	}
	// RFC 8689 5: a REQUIRETLS message's bounce returns its headers
	// only, whatever RET asked.
	return s.report(m, &rep, from, kind, len(failed), m.DSN.Ret == dsn.RetFull && !m.RequireTLS)
}

// returned reads what a report returns of the message on r: the whole
// of it when full and it is no larger than bounce.MaxFull, else its
// header section.
func returned(r io.Reader, full bool) (whole, headers []byte) {
	if !full {
		headers, _ = bounce.ReadHeaders(r)
		return nil, headers
	}
	b, err := io.ReadAll(io.LimitReader(r, bounce.MaxFull+1))
	if err == nil && len(b) <= bounce.MaxFull {
		return b, nil
	}
	// The header section is read within MaxHeaders bytes, fewer than b has.
	headers, _ = bounce.ReadHeaders(bytes.NewReader(b))
	return nil, headers
}

// report injects DSN rep about message m from envelope sender from to
// rep.To, into control/bouncequeue's queue if set, else this one, and
// logs it as kind. full returns the whole message (RET=FULL) when it is
// no larger than bounce.MaxFull; else its headers go back.
func (s *Sender) report(m *queue.Message, rep *bounce.Report, from, kind string, rcpts int, full bool) error {
	if body, err := s.r.Body(m.ID); err == nil {
		rep.Full, rep.Headers = returned(body, full)
		body.Close()
	}
	q := s.q
	if bqDir := s.config().BounceQueue; bqDir != "" {
		bq, err := queue.Open(bqDir)
		if err != nil {
			return fmt.Errorf("bounce queue: %w", err)
		}
		defer bq.Close()
		q = bq
	}
	// A report about a REQUIRETLS message carries its headers: it asks
	// for REQUIRETLS in turn (RFC 8689 5), so that what the sender
	// wanted kept off the clear is not sent there in the report.
	env := envelope.Envelope{Sender: from, Recipients: []string{rep.To}, RequireTLS: m.RequireTLS}
	pid := uint32(os.Getpid())
	uid := uint32(os.Getuid())
	trace := inject.Trace("gw-send", pid, uid, s.now())
	bid, err := inject.Stream(q, uid, pid, trace, bytes.NewReader(rep.Message()), bytes.NewReader(env.Wire()))
	if err != nil {
		return fmt.Errorf("injecting the %s: %w", kind, err)
	}
	q.Pull()
	s.log.Info(kind, "qid", m.ID, "bounce", bid, "to", rep.To, "rcpts", rcpts)
	return nil
}
