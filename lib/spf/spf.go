// Package spf checks a client's right to use a domain (RFC 7208), for the
// two identities gw-smtpd sees: the HELO name and the MAIL FROM domain.
//
// The evaluation of the record itself (mechanisms, macros, the lookup
// limits of §4.6.4: 10 terms that query DNS, 2 void lookups) is the
// blitiri.com.ar/go/spf library's, which keeps the RFC's limits by default
// and is used by other Go MTAs; this package gives it gw's resolver
// (GW_DNS, lib/dns), a deadline, and turns its answer into what the
// listener needs: a result, a reason for the log and the
// Authentication-Results header, and what a face's policy does with it.
package spf

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	libspf "blitiri.com.ar/go/spf"

	"gw/lib/dns"
)

// Result values, as RFC 7208 §8 names them (and as Authentication-Results
// and Received-SPF write them).
const (
	None      = string(libspf.None)
	Neutral   = string(libspf.Neutral)
	Pass      = string(libspf.Pass)
	Fail      = string(libspf.Fail)
	SoftFail  = string(libspf.SoftFail)
	TempError = string(libspf.TempError)
	PermError = string(libspf.PermError)
)

// Identities checked (RFC 7208 §2.3, §2.4), the ptype.property of the
// Authentication-Results header.
const (
	IdentityHelo     = "helo"
	IdentityMailFrom = "mailfrom"
)

// Result is the outcome of one check.
type Result struct {
	Identity string // IdentityHelo or IdentityMailFrom
	Domain   string // the domain whose record was evaluated ("" when none could be)
	Sender   string // the identity as checked: postmaster@HELO for a null sender
	Value    string // None, Pass, Fail, …
	Reason   string // why, for the log: the library's error, or "" on a plain match
}

// Timeout bounds one check: RFC 7208 §4.6.4 asks for at least 20 seconds;
// a client waiting at MAIL should not wait much longer.
const Timeout = 20 * time.Second

// Checker evaluates SPF records through one resolver.
type Checker struct {
	resolver *dns.Resolver
}

// New returns a checker that asks r.
func New(r *dns.Resolver) *Checker { return &Checker{resolver: r} }

// Helo checks the HELO identity. A HELO that is not a domain name (an
// address literal, a bare word) has no SPF record to ask: result none
// (RFC 7208 §2.3).
func (c *Checker) Helo(ctx context.Context, ip net.IP, helo string) Result {
	r := Result{Identity: IdentityHelo, Sender: "postmaster@" + helo}
	if !isDomain(helo) {
		r.Value, r.Reason = None, "HELO is not a domain name"
		r.Sender = ""
		return r
	}
	r.Domain = helo
	return c.check(ctx, ip, helo, r)
}

// MailFrom checks the MAIL FROM identity. The null sender is checked as
// postmaster@HELO (RFC 7208 §2.4).
func (c *Checker) MailFrom(ctx context.Context, ip net.IP, helo, sender string) Result {
	r := Result{Identity: IdentityMailFrom, Sender: sender}
	if sender == "" {
		r.Sender = "postmaster@" + helo
	}
	at := strings.LastIndexByte(r.Sender, '@')
	domain := r.Sender[at+1:]
	if at < 1 || !isDomain(domain) {
		r.Value, r.Reason = None, "no domain to check"
		return r
	}
	r.Domain = domain
	return c.check(ctx, ip, helo, r)
}

func (c *Checker) check(ctx context.Context, ip net.IP, helo string, r Result) Result {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	// The library looks the domain up from the sender's part after its
	// first @; give it the one this package chose (the last @'s).
	sender := r.Sender
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		sender = strings.ReplaceAll(sender[:i], "@", "=") + sender[i:]
	}
	v, err := libspf.CheckHostWithSender(ip, helo, sender,
		libspf.WithResolver(c.resolver.Resolver), libspf.WithContext(ctx))
	r.Value = string(v)
	if err != nil && !isMatch(err) {
		r.Reason = err.Error()
	}
	return r
}

// isMatch reports whether err is only the library's note of which
// mechanism matched, not a reason worth logging.
func isMatch(err error) bool {
	for _, m := range []error{libspf.ErrMatchedAll, libspf.ErrMatchedA, libspf.ErrMatchedIP,
		libspf.ErrMatchedMX, libspf.ErrMatchedPTR, libspf.ErrMatchedExists} {
		if errors.Is(err, m) {
			return true
		}
	}
	return false
}

// isDomain reports whether s looks like a domain name SPF can be asked
// about: dotted labels, no address literal.
func isDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 || !strings.Contains(s, ".") || net.ParseIP(strings.Trim(s, "[]")) != nil {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}
