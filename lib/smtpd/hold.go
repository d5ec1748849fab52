package smtpd

import (
	"bytes"
	"os"
	"strconv"

	"gw/lib/envelope"
	"gw/lib/smtpserver"
)

// A message DMARC quarantines (its author domain's p=quarantine, or
// p=reject on a face that quarantines) is held in the instance's
// quarantine, the directory gw-scan holds its own in: the administrator
// lists, shows, releases and removes both with gw-scan quarantine. It is
// held as it would have been queued (Received, the checks' fields, the
// milters' changes), so a release delivers what the inside would have
// got. It is held after the milters: one that refuses or discards it
// decides first, as it would for any message.

var errHoldFailed = reply(451, "4.3.0", "unable to hold the message in the quarantine")

// holdMessage puts the message in the quarantine for env's recipients and
// returns the reply: 250 once the file is on disk (Put fsyncs it and its
// directory), 451 when it could not be written, so that nothing is both
// refused for good and lost.
func (s *session) holdMessage(env envelope.Envelope, data []byte, msgID string) *smtpserver.Reply {
	reason := s.hold
	s.hold = ""
	if s.cfg.Explain != nil {
		s.explain("dmarc: would be held in the quarantine for %d recipient(s) (not held: session test)", len(env.Recipients))
		return reply(250, "2.0.0", "ok "+msgID)
	}
	// The session's message id is unique in this process; the pid makes
	// it unique among the processes tcpserver runs side by side.
	id := msgID + "." + strconv.Itoa(os.Getpid())
	s.waiting() // Put fsyncs
	if err := s.cfg.Quarantine.Put(id, reason, env, bytes.NewReader(data)); err != nil {
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", "quarantine", "err", err)
		return errHoldFailed
	}
	s.log("info", "quarantined", "msg", msgID, "id", id, "from", s.from.String(), "rcpts", len(env.Recipients), "size", len(data), "reason", sanitize(reason))
	return reply(250, "2.0.0", "ok "+msgID)
}
