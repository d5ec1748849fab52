package send

import (
	"gw/lib/bounce"
	"gw/lib/dsn"
	"gw/lib/mailbox"
	"gw/lib/queue"
	"gw/lib/route"
)

// notifySuccess sends the sender of m a success notice for the
// recipients of j delivered now that asked NOTIFY=SUCCESS, where the
// server took no DSN request (RFC 3461 5.2.2): Action "relayed", or
// "delivered" after LMTP, whose server is the final one. A server that
// offered DSN got NOTIFY with the recipient, and the notice is its to
// send. A failure to queue the notice is logged: the message went out
// all the same, and is not sent again for it.
func (s *Sender) notifySuccess(j *job, m *queue.Message, out []outcome) {
	action := "relayed"
	if j.route.Proto == route.LMTP {
		action = "delivered"
	}
	var rcpts []bounce.Recipient
	for k, i := range j.rcpts {
		rc := m.Recipients[i]
		if out[k].err != nil || out[k].dsnTaken || !rc.DSN.Notify.Wants(dsn.NotifySuccess) {
			continue
		}
		rcpts = append(rcpts, bounce.Recipient{Address: rc.Address, Action: action, Status: "2.0.0",
			RemoteMTA: out[k].at.Name, OriginalRecipient: rc.DSN.Field()})
	}
	// A notice never goes to the null sender (RFC 3461 6.1), nor to one
	// no path can carry.
	if len(rcpts) == 0 || m.Sender == "" || m.Sender == DoubleBounceSender || mailbox.Check(m.Sender) != nil {
		return
	}
	cfg := s.config()
	rep := bounce.Report{ReportingMTA: cfg.Me, From: cfg.BounceFrom, To: m.Sender, QueueID: m.ID.String(),
		Arrival: m.Arrival, Date: s.now(), EnvID: m.DSN.EnvID, Recipients: rcpts}
	if err := s.report(m, &rep, "", "success_notice", len(rcpts), false); err != nil {
		s.log.Warning("success_notice", "qid", m.ID, "err", err)
	}
}

// wantFailureNotice keeps of failed the recipients whose NOTIFY asks for
// a failure report (all when NOTIFY was not given), and logs the others.
func (s *Sender) wantFailureNotice(m *queue.Message, failed []queue.Recipient) []queue.Recipient {
	var keep []queue.Recipient
	for _, rc := range failed {
		if rc.DSN.Notify.Wants(dsn.NotifyFailure) {
			keep = append(keep, rc)
			continue
		}
		s.log.Info("bounce_suppressed", "qid", m.ID, "rcpt", rc.Address, "reason", "notify", "notify", rc.DSN.Notify.String())
	}
	return keep
}
