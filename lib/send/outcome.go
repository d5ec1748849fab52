package send

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"gw/lib/bounce"
	"gw/lib/deliver"
	"gw/lib/queue"
	"gw/lib/route"
)

// Outcomes travel from lib/deliver to the journal as data
// (queue.Outcome): who said it, the reply code, the enhanced status, the
// text, the server and the stage. They become text only at the edges: the
// log line, gw-qstat, and the DSN (dsnRecipient), so nothing is read back
// out of a sentence.

// gwError is a failure of gw-send's own with its enhanced status; the
// class of the status says whether it is permanent.
type gwError struct {
	status string
	text   string
}

func (e *gwError) Error() string   { return e.text + " (#" + e.status + ")" }
func (e *gwError) Status() string  { return e.status }
func (e *gwError) Reason() string  { return e.text }
func (e *gwError) Temporary() bool { return !strings.HasPrefix(e.status, "5.") }

// verdict is a failure gw decided itself, with its status apart from its
// reason (gwError, lib/deliver's unwritable addresses).
type verdict interface {
	Status() string
	Reason() string
}

// storedOutcome is an outcome already recorded, given again as a job's
// result (a recipient failed for its age without a new attempt).
type storedOutcome struct{ o queue.Outcome }

func (e storedOutcome) Error() string   { return e.o.String() }
func (e storedOutcome) Temporary() bool { return e.o.Temporary() }

// outcomeOf is err, a recipient's failure, as the journal keeps it. dot
// says the final dot had gone out; at is the host it comes from (zero for
// none), whose name and address the scheduler knows without reading them
// back out of the error's text.
func outcomeOf(err error, dot bool, at route.Host) queue.Outcome {
	var (
		so storedOutcome
		rp *deliver.Reply
		ce *deliver.ConnError
		re *route.Error
		ve verdict
		pd possibleDuplicate
		o  queue.Outcome
	)
	switch {
	case errors.As(err, &so):
		return so.o
	case errors.As(err, &rp):
		o = queue.Outcome{Source: queue.FromReply, Code: rp.Code, Status: rp.Status(), Text: rp.Text,
			Stage: string(rp.Stage), Note: rp.Note}
		if rp.Own {
			o.Source = queue.FromGW
		} else if rp.Stage == "" {
			o.Source = queue.FromQMTP
		}
	case errors.As(err, &ce):
		o = queue.Outcome{Source: queue.FromConn, Status: ce.Status(), Text: ce.Err.Error(),
			Stage: string(ce.Stage), Note: ce.Note}
	case errors.As(err, &re):
		o = queue.Outcome{Source: queue.FromGW, Status: re.Status, Text: re.Msg}
	case errors.As(err, &ve):
		o = queue.Outcome{Source: queue.FromGW, Status: ve.Status(), Text: ve.Reason()}
	default:
		st := "4.0.0"
		if deliver.Permanent(err) {
			st = "5.0.0"
		}
		o = queue.Outcome{Source: queue.FromGW, Status: st, Text: err.Error()}
	}
	if at.Addr.IsValid() {
		o.Host, o.Addr = at.Name, netip.AddrPortFrom(at.Addr, uint16(at.Port)).String()
	}
	o.DotSent = dot
	if errors.As(err, &pd) {
		o.Note = joinNotes(o.Note, "possible duplicate: no reply after the final dot")
	}
	return o
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// expired is o, a recipient's last temporary failure, made permanent
// because the message outlived queuelifetime: the reply stays the
// diagnostic, the status says why gw gave up (RFC 3463 5.4.7).
func expired(o queue.Outcome) queue.Outcome {
	o.Status = "5.4.7"
	o.Note = joinNotes(o.Note, "I'm not going to try again; this message has been in the queue too long")
	return o
}

// dsnRecipient renders recipient rc's last outcome as the fields of a DSN
// (RFC 3464 2.3): the status; Remote-MTA, the server's DNS name;
// Diagnostic-Code "smtp; <code> <text>" for a server's SMTP or LMTP reply
// (its text starts with its enhanced code when it gave one), else "x-gw;
// <text>" for gw's own verdicts and failures without a reply. The one
// place a stored outcome becomes DSN fields, for bounces and delay
// notices alike.
func dsnRecipient(rc queue.Recipient, action string) bounce.Recipient {
	o := rc.Outcome
	r := bounce.Recipient{Address: rc.Address, Action: action, Status: o.Status, RemoteMTA: o.Host,
		Explanation: o.String(), OriginalRecipient: rc.DSN.Field()}
	if r.Status == "" {
		r.Status = "5.0.0"
		if action == "delayed" {
			r.Status = "4.0.0"
		}
	}
	switch o.Source {
	case queue.FromReply:
		r.DiagnosticType, r.Diagnostic = "smtp", strings.TrimSpace(strconv.Itoa(o.Code)+" "+o.Text)
	case queue.FromText:
		r.DiagnosticType, r.Diagnostic = "x-gw", o.Text
	default:
		r.DiagnosticType, r.Diagnostic = "x-gw", o.Text
		if o.Source == queue.FromQMTP {
			r.Diagnostic = strconv.Itoa(o.Code) + " " + o.Text
		}
		if o.Stage != "" && o.Stage != string(deliver.StageConnect) {
			r.Diagnostic += " (during " + o.Stage + ")"
		}
	}
	if o.Note != "" && r.DiagnosticType != "smtp" {
		r.Diagnostic += " (" + o.Note + ")"
	}
	return r
}
