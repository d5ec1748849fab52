// Package dmarc evaluates DMARC (RFC 7489) for a received message: the
// author's domain (RFC 5322 From) is looked up, SPF and DKIM results are
// checked for alignment with it against the organisational domain, and
// the domain's policy says what to do with a failure.
//
// Parsing the record is github.com/emersion/go-msgauth/dmarc's; it has no
// evaluation, which is this package's. Organisational domains come from
// the Public Suffix List compiled into golang.org/x/net/publicsuffix:
// built into the binary, so gw reads no list file at run time (nothing to
// distrust, nothing missing on a host), at the cost of following the list
// only as gw is rebuilt; DMARC's boundaries (the registrable domains)
// change rarely.
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"gw/lib/dkim"
	"gw/lib/dns"
	"gw/lib/spf"
)

// Result values, as RFC 7489 §11.2 registers them for
// Authentication-Results.
const (
	None      = "none"
	Pass      = "pass"
	Fail      = "fail"
	TempError = "temperror"
	PermError = "permerror"
)

// Policies a domain asks for (p=, sp=).
const (
	PolicyNone       = "none"
	PolicyQuarantine = "quarantine"
	PolicyReject     = "reject"
)

// Result is the evaluation of one message.
type Result struct {
	Value       string // None, Pass, Fail, TempError, PermError
	From        string // the author domain
	OrgDomain   string // its organisational domain
	RecordAt    string // the domain whose record applied
	Policy      string // what the record asks for a failure: p=, or sp= for a subdomain; pct= applied
	SPFAligned  bool   // an SPF pass for an aligned MAIL FROM domain
	DKIMAligned bool   // a DKIM pass for an aligned d=
	Reason      string // why, when not pass
	RUA         []string
	// Record is the record that applied, nil without one: what aggregate
	// reports echo as the published policy.
	Record *msgdmarc.Record
}

// Evaluator looks records up through one resolver.
type Evaluator struct {
	Resolver *dns.Resolver
	// Sample decides pct=: whether a failing message falls in the pct
	// per cent the policy applies to. Nil draws at random.
	Sample func(pct int) bool
}

// Evaluate judges a message by its author domain, the SPF result of its
// MAIL FROM and the results of its DKIM signatures.
func (e *Evaluator) Evaluate(ctx context.Context, from string, mailFrom spf.Result, sigs []dkim.Result) Result {
	from = strings.ToLower(strings.TrimSuffix(from, "."))
	r := Result{From: from, OrgDomain: OrgDomain(from)}
	rec, at, err := e.lookup(ctx, from, r.OrgDomain)
	switch {
	case errors.Is(err, errTemporary):
		r.Value, r.Reason = TempError, err.Error()
		return r
	case err != nil:
		r.Value, r.Reason = PermError, err.Error()
		return r
	case rec == nil:
		r.Value, r.Reason = None, "no DMARC record"
		return r
	}
	r.RecordAt, r.RUA, r.Record = at, rec.ReportURIAggregate, rec
	r.SPFAligned = mailFrom.Value == spf.Pass && Aligned(mailFrom.Domain, from, string(rec.SPFAlignment))
	for _, s := range sigs {
		if s.Value == dkim.Pass && Aligned(s.Domain, from, string(rec.DKIMAlignment)) {
			r.DKIMAligned = true
		}
	}
	if r.SPFAligned || r.DKIMAligned {
		r.Value, r.Policy = Pass, string(rec.Policy)
		return r
	}
	r.Value = Fail
	r.Reason = "neither SPF nor DKIM aligned with " + from
	r.Policy = string(rec.Policy)
	if at != from && rec.SubdomainPolicy != "" {
		r.Policy = string(rec.SubdomainPolicy)
	}
	if rec.Percent != nil && *rec.Percent < 100 && !e.sample(*rec.Percent) {
		// RFC 7489 §6.6.4: outside the sample, the next weaker policy.
		r.Reason += fmt.Sprintf("; outside pct=%d", *rec.Percent)
		switch r.Policy {
		case PolicyReject:
			r.Policy = PolicyQuarantine
		case PolicyQuarantine:
			r.Policy = PolicyNone
		}
	}
	return r
}

func (e *Evaluator) sample(pct int) bool {
	if e.Sample != nil {
		return e.Sample(pct)
	}
	return rand.IntN(100) < pct
}

var errTemporary = errors.New("DMARC record lookup failed temporarily")

// lookup finds the record for the author domain, or else for its
// organisational domain (RFC 7489 §6.6.3), and says where it found it.
func (e *Evaluator) lookup(ctx context.Context, from, org string) (*msgdmarc.Record, string, error) {
	rec, err := e.record(ctx, from)
	if rec != nil || err != nil || org == from {
		return rec, from, err
	}
	rec, err = e.record(ctx, org)
	return rec, org, err
}

// record reads _dmarc.domain: the one TXT record starting v=DMARC1
// (others are ignored; more than one is none, §6.6.3).
func (e *Evaluator) record(ctx context.Context, domain string) (*msgdmarc.Record, error) {
	txts, err := e.Resolver.LookupTXT(ctx, "_dmarc."+domain)
	if dns.Temporary(err) {
		return nil, fmt.Errorf("%w: %v", errTemporary, err)
	}
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=DMARC1") {
			found = append(found, t)
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	rec, err := msgdmarc.Parse(found[0])
	if err != nil {
		return nil, fmt.Errorf("_dmarc.%s: %v", domain, err)
	}
	return rec, nil
}

// OrgDomain is a domain's organisational domain: the public suffix and
// one label more (RFC 7489 §3.2). A name that is itself a public suffix
// is its own.
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// Aligned reports whether an authenticated domain is aligned with the
// author domain: the same name in strict mode ("s"), the same
// organisational domain in relaxed mode (anything else, the default).
func Aligned(authenticated, from, mode string) bool {
	a := strings.ToLower(strings.TrimSuffix(authenticated, "."))
	f := strings.ToLower(strings.TrimSuffix(from, "."))
	if a == "" || f == "" {
		return false
	}
	if mode == string(msgdmarc.AlignmentStrict) {
		return a == f
	}
	return OrgDomain(a) == OrgDomain(f)
}
