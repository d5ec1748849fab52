package scan

import (
	"bytes"
	"context"

	"gw/lib/envelope"
	"gw/lib/qq"
)

// Judge scans msg (stored form) and decides what Wrap would do with it,
// but holds nothing in the quarantine and hands nothing to the queue:
// gw-smtpd's session test (--test-session) explains this verdict instead
// of acting on it. The verdict line is logged as Wrap logs it. code is
// Wrap's exit code for a refusal (qq.Refused, qq.TemporaryRefusal), else
// qq.OK; plan says which recipients would be delivered, held or dropped.
func (w *Wrapper) Judge(ctx context.Context, msg []byte, e envelope.Envelope) (code int, plan Plan, rep *Report) {
	spool := bytes.NewReader(msg)
	rep = w.Scanner.Scan(ctx, spool, int64(len(msg)), NewID(), w.meta(spool, e))
	plan = w.Scanner.Plan(rep, e)
	code = qq.OK
	switch plan.Refuse {
	case Reject:
		code = qq.Refused
	case Tempfail:
		code = qq.TemporaryRefusal
	}
	kv := []any{"code", code}
	if plan.Text != "" {
		kv = append(kv, "reason", plan.Text)
	}
	w.Scanner.LogVerdict(rep, msgID(spool), e.Recipients, plan.Acts, kv...)
	return code, plan, rep
}

// Reason is the verdict in words, as a quarantine listing gives it:
// "virus Eicar-Signature", "spam score=1000.0", or "policy".
func Reason(rep *Report) string { return reason(rep) }
