package qmtp

import (
	"errors"

	"gw/lib/handoff"
)

var errNoSpace = errors.New("insufficient system storage")

// noSpace reports, logging why, whether the queue's filesystem has too
// little room for package msgID, whose message the client declared to be
// declared bytes long (handoff.Space). QMTP has no MAIL: the check comes
// before the message is read, and a package refused for it is read and
// dropped, not handed to the injector, and answered Z (4.3.1).
func (s *session) noSpace(msgID string, declared int64) bool {
	need := handoff.SpaceNeeded(s.databytes(), declared)
	short, free, err := s.cl.Space.Short(need)
	if err != nil {
		s.log("warning", "space", "path", s.cl.Space.Path, "err", err)
	}
	if short {
		s.log("info", "space", "msg", msgID, "result", "reject", "free", free, "need", need)
	}
	return short
}
