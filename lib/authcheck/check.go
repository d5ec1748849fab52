package authcheck

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"gw/lib/arc"
	"gw/lib/authres"
	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/dmarcreport"
	"gw/lib/dns"
	"gw/lib/spf"
)

// Recorder keeps DMARC results for aggregate reports (a
// dmarcreport.Store).
type Recorder interface {
	Record(now time.Time, row dmarcreport.Row) error
}

// Checker runs the checks of one instance with one resolver.
type Checker struct {
	// Reports, when set, is told every DMARC result a report is owed for.
	Reports Recorder

	cfg   *Config
	spf   *spf.Checker
	dkim  *dkim.Verifier
	arc   *arc.Verifier
	dmarc *dmarc.Evaluator
}

// New returns a checker for cfg asking r.
func New(cfg *Config, r *dns.Resolver) *Checker {
	return &Checker{cfg: cfg, spf: spf.New(r),
		dkim:  &dkim.Verifier{Resolver: r, MaxSignatures: cfg.MaxSignatures},
		arc:   &arc.Verifier{Resolver: r},
		dmarc: &dmarc.Evaluator{Resolver: r}}
}

// Transaction is what the checks know of one message's envelope.
type Transaction struct {
	Face     Face
	Client   netip.Addr
	Helo     string
	Sender   string // MAIL FROM's address; "" for the null sender
	Relaying bool   // RELAYCLIENT or AUTH: our own users' mail, signed not judged
	// HeloSPF is the session's HELO result from an earlier transaction,
	// kept by the listener: a HELO name is checked once a session, not
	// once a message. Mail fills it.
	HeloSPF *HeloResult

	spf []spf.Result
}

// HeloResult is the SPF result of a HELO name.
type HeloResult struct {
	Name   string
	Result spf.Result
}

// Reply is a refusal for the listener to send.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Mail checks SPF for HELO and MAIL FROM, unless the face checks nothing
// or the client relays. A reply refuses the sender: its policy refuses
// an SPF fail.
func (c *Checker) Mail(ctx context.Context, tx *Transaction) *Reply {
	tx.spf = nil
	if tx.Face.SPF == spf.PolicyNone || tx.Relaying {
		return nil
	}
	ip := net.IP(tx.Client.Unmap().AsSlice())
	if tx.HeloSPF == nil || tx.HeloSPF.Name != tx.Helo {
		tx.HeloSPF = &HeloResult{Name: tx.Helo, Result: c.spf.Helo(ctx, ip, tx.Helo)}
	}
	from := c.spf.MailFrom(ctx, ip, tx.Helo, tx.Sender)
	tx.spf = []spf.Result{tx.HeloSPF.Result, from}
	if r := tx.Face.SPF.Refusal(from); r != nil {
		return &Reply{r.Code, r.Enhanced, r.Text}
	}
	return nil
}

// SPF is the transaction's SPF results, HELO then MAIL FROM, for the log.
func (tx *Transaction) SPF() []spf.Result { return tx.spf }

// Outcome is what the end of a message decides.
type Outcome struct {
	// Prepend are the header fields to put on top of the message, in
	// order, each ending LF (the stored form).
	Prepend []string
	// Message is the message as it is to be queued (incoming
	// Authentication-Results claiming our id removed), LF-ended.
	Message []byte
	Refuse  *Reply // reject: DMARC p=reject enforced
	// Quarantine is set when DMARC asks for quarantine and the face
	// enforces it; Reason says why, for the log and the quarantine.
	Quarantine bool
	Reason     string
	Removed    int // incoming Authentication-Results removed
	// ReportErr is a failure to record the result for DMARC reports:
	// logged, the message goes on.
	ReportErr error
	DKIM      []dkim.Result
	DMARC     *dmarc.Result
	ARC       *arc.Result
}

// End judges a whole message in stored form (LF line ends). Relayed mail
// is signed with its From domain's keys; other mail, when the face
// verifies, gets DKIM, DMARC and ARC checked, the Authentication-Results
// field, and the decision DMARC and the face make; ARC sealed when the
// face seals.
func (c *Checker) End(ctx context.Context, tx *Transaction, msg []byte) (Outcome, error) {
	if tx.Relaying {
		return c.sign(msg)
	}
	out := Outcome{Message: msg}
	if !tx.Face.Verify && tx.spf == nil && !tx.Face.Seal {
		return out, nil
	}
	out.Message, out.Removed = authres.RemoveClaiming(msg, c.cfg.AuthservID)
	crlf := dkim.ToCRLF(out.Message)
	rep := authres.Report{SPF: tx.spf, RemoteIP: tx.Client.Unmap().String()}
	if tx.Face.Verify {
		var err error
		if out.DKIM, err = c.dkim.Verify(ctx, crlf); err != nil {
			// a header no reader agrees on: nothing can be verified, and
			// DMARC cannot name an author
			out.DKIM = []dkim.Result{{Value: dkim.PermError, Reason: err.Error()}}
		}
		rep.DKIM, rep.DKIMChecked = out.DKIM, true
		a := c.arc.Verify(ctx, crlf)
		out.ARC, rep.ARC = &a, &a
		var mailFrom spf.Result
		var unreadable error
		out.DMARC, mailFrom, unreadable = c.evaluate(ctx, tx, crlf, out.DKIM)
		rep.DMARC = out.DMARC
		action := c.decide(tx, &out)
		if unreadable != nil && tx.Face.DMARC != dmarc.ReportOnly {
			// A header readers disagree on, or several authors: DMARC
			// cannot say whose message it is, and a spoofer would write
			// exactly such a header to get past it (RFC 7489 §6.6.1).
			out.Refuse = &Reply{550, "5.7.1", "message header cannot be authenticated: " + unreadable.Error()}
			out.Reason = "unreadable header: " + unreadable.Error()
			return out, nil
		}
		if c.Reports != nil {
			if row, ok := dmarcreport.RowOf(tx.Client.Unmap().String(), *out.DMARC, mailFrom, out.DKIM, action, out.Reason); ok {
				out.ReportErr = c.Reports.Record(time.Now(), row)
			}
		}
	}
	if out.Refuse != nil {
		return out, nil
	}
	field := authres.Field(c.cfg.AuthservID, rep)
	if tx.Face.Seal && c.cfg.Sealer != nil {
		cv := arc.None
		if out.ARC != nil {
			cv = out.ARC.Value
		} else {
			cv = c.arc.Verify(ctx, crlf).Value
		}
		set, err := c.cfg.Sealer.Seal(crlf, cv, authres.Results(rep))
		if err != nil && err != arc.ErrChainFull {
			return out, err
		}
		out.Prepend = append(out.Prepend, lf(string(set)))
	}
	out.Prepend = append(out.Prepend, lf(field))
	return out, nil
}

// evaluate runs DMARC for the message's author domain. A header that
// cannot be read, or that names more than one author domain, is
// reported apart: no DMARC result can be trusted for it. A message
// without From has no author to protect: DMARC none.
func (c *Checker) evaluate(ctx context.Context, tx *Transaction, crlf []byte, sigs []dkim.Result) (*dmarc.Result, spf.Result, error) {
	fields, _, err := dkim.Split(crlf)
	var from string
	if err == nil {
		from, err = dkim.FromDomain(fields)
	}
	if errors.Is(err, dkim.ErrNoFrom) {
		return &dmarc.Result{Value: dmarc.None, Reason: err.Error()}, spf.Result{}, nil
	}
	if err != nil {
		return &dmarc.Result{Value: dmarc.PermError, Reason: err.Error()}, spf.Result{}, err
	}
	var mailFrom spf.Result
	if len(tx.spf) == 2 {
		mailFrom = tx.spf[1]
	} else {
		// the face checks no SPF at MAIL; DMARC still needs its result
		ip := net.IP(tx.Client.Unmap().AsSlice())
		mailFrom = c.spf.MailFrom(ctx, ip, tx.Helo, tx.Sender)
	}
	r := c.dmarc.Evaluate(ctx, from, mailFrom, sigs)
	return &r, mailFrom, nil
}

func (c *Checker) decide(tx *Transaction, out *Outcome) dmarc.Action {
	arcValue, sealer := "", ""
	if out.ARC != nil {
		arcValue, sealer = out.ARC.Value, out.ARC.Sealer
	}
	d := dmarc.Decide(*out.DMARC, tx.Face.DMARC, c.cfg.Forwarders, tx.Client, arcValue, sealer)
	out.Reason = d.Reason
	switch d.Action {
	case dmarc.Reject:
		out.Refuse = &Reply{550, "5.7.1", dmarc.RejectText(*out.DMARC)}
	case dmarc.Quarantine:
		out.Quarantine = true
	}
	return d.Action
}

// sign adds the DKIM signatures of the message's From domain.
func (c *Checker) sign(msg []byte) (Outcome, error) {
	out := Outcome{Message: msg}
	if c.cfg.Signer == nil {
		return out, nil
	}
	sigs, err := c.cfg.Signer.Sign(dkim.ToCRLF(msg))
	if err != nil {
		// no single From domain: nothing to sign for, the message goes
		out.Reason = "not signed: " + err.Error()
		return out, nil
	}
	if len(sigs) > 0 {
		out.Prepend = append(out.Prepend, lf(string(sigs)))
	}
	return out, nil
}

func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// Config is the settings the checker runs with.
func (c *Checker) Config() *Config { return c.cfg }

// Needed reports whether a transaction's message must be seen whole
// before it is queued: it is checked, or signed, or sealed.
func (c *Checker) Needed(tx *Transaction) bool {
	if tx.Relaying {
		return c.cfg.Signer != nil
	}
	return tx.Face.Verify || tx.spf != nil || tx.Face.Seal
}
