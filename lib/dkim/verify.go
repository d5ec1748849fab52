package dkim

import (
	"context"
	"errors"
	"net"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"gw/lib/dns"
)

// Result values of one signature, as RFC 8601 §2.7.1 names them.
const (
	None      = "none"
	Pass      = "pass"
	Fail      = "fail"
	Policy    = "policy"
	Neutral   = "neutral"
	TempError = "temperror"
	PermError = "permerror"
)

// MaxSignatures is how many DKIM signatures of one message are verified
// by default: each costs a DNS query and a public-key operation, and a
// message can carry hundreds. The rest are reported as not checked.
const MaxSignatures = 5

// Result is one signature's verification.
type Result struct {
	Domain     string // d=
	Identifier string // i=, or @d= when absent
	Selector   string // s=
	Alg        string // a=
	B          string // the start of b=, to tell signatures of one domain apart (RFC 6008)
	Value      string // Pass, Fail, …
	Reason     string // why, when not pass
}

// Verifier checks signatures with keys from one resolver.
type Verifier struct {
	Resolver      *dns.Resolver
	MaxSignatures int // 0: MaxSignatures
}

// Verify checks every DKIM-Signature of a CRLF message, in header order
// (the first MaxSignatures of them), and returns one result each. A
// message that cannot be read as a header gives an error.
func (v *Verifier) Verify(ctx context.Context, msg []byte) ([]Result, error) {
	fields, _, err := Split(msg)
	if err != nil {
		return nil, err
	}
	var sigs []Field
	for _, f := range fields {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			sigs = append(sigs, f)
		}
	}
	if len(sigs) == 0 {
		return nil, nil
	}
	max := v.MaxSignatures
	if max <= 0 {
		max = MaxSignatures
	}
	verifs, err := msgauth.VerifyWithOptions(strings.NewReader(string(msg)), &msgauth.VerifyOptions{
		LookupTXT:        v.lookupTXT(ctx),
		MaxVerifications: max,
	})
	if err != nil && !errors.Is(err, msgauth.ErrTooManySignatures) {
		return nil, err
	}
	results := make([]Result, len(sigs))
	for i, sig := range sigs {
		results[i] = describe(sig)
		if i >= len(verifs) {
			results[i].Value, results[i].Reason = Policy, "signature not checked: more than the limit of signatures"
			continue
		}
		results[i].Value, results[i].Reason = value(verifs[i].Err)
	}
	return results, nil
}

// describe fills a result's names from the signature field, leniently:
// a malformed signature is still reported, as permerror.
func describe(sig Field) Result {
	var r Result
	tags, err := ParseTags(sig.Value())
	if err != nil {
		return r
	}
	r.Domain, r.Selector, r.Alg = StripWSP(tags["d"]), StripWSP(tags["s"]), StripWSP(tags["a"])
	r.Identifier = StripWSP(tags["i"])
	if r.Identifier == "" && r.Domain != "" {
		r.Identifier = "@" + r.Domain
	}
	if b := StripWSP(tags["b"]); len(b) >= 8 {
		r.B = b[:8]
	}
	return r
}

func value(err error) (string, string) {
	switch {
	case err == nil:
		return Pass, ""
	case msgauth.IsTempFail(err):
		return TempError, err.Error()
	case msgauth.IsPermFail(err):
		return PermError, err.Error()
	}
	return Fail, err.Error()
}

// lookupTXT gives the library gw's resolver, and refuses keys outside the
// size limits before the library spends time on them.
func (v *Verifier) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := v.Resolver.LookupTXT(ctx, name)
		if dns.Temporary(err) {
			// the library tells temporary from permanent by net.Error
			return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
		}
		if err != nil {
			return nil, err
		}
		if len(txts) == 1 {
			if _, err := ParseKeyRecord(txts[0]); err != nil {
				return nil, err
			}
		}
		return txts, nil
	}
}
