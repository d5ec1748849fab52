package smtpd

import (
	"gw/lib/handoff"
	"gw/lib/mailbox"
)

// noSpace reports, logging why, whether the queue's filesystem has too
// little room for the message MAIL starts (handoff.Space): 452 4.3.1 now
// costs the client a command, where a refusal after the data costs it the
// whole message.
func (s *session) noSpace(from mailbox.Address, declared int64) bool {
	need := handoff.SpaceNeeded(s.databytes(), declared)
	short, free, err := s.cl.Space.Short(need)
	if err != nil {
		s.log("warning", "space", "path", s.cl.Space.Path, "err", err)
	}
	if short {
		s.log("info", "mail", "from", from.String(), "result", "reject", "reason", "no_space", "free", free, "need", need)
	}
	return short
}
