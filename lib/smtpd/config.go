package smtpd

import (
	"crypto/tls"
	"time"

	"gw/lib/authcheck"
	"gw/lib/logline"
	"gw/lib/milter"
	"gw/lib/ratelimit"
	"gw/lib/rbl"
	"gw/lib/relay"
	"gw/lib/scan"
	"gw/lib/tcpserver"
)

// Config is what a listener knows before a client connects: control files
// and options, shared by every session of the process.
type Config struct {
	Hostname    string        // control/me: replies, <postmaster>'s domain
	Greeting    string        // control/smtpgreeting, else Hostname
	LocalIPHost string        // control/localiphost: box@[local IP] becomes box@LocalIPHost
	Databytes   int64         // control/databytes; 0 = no limit
	MaxRcpt     int           // recipients a message (errTooManyRcpt); 0 = no limit
	MaxErrors   int           // syntax and sequence errors a session; 0 = no limit
	MaxBadRcpt  int           // refused recipients a session; 0 = no limit
	Timeout     time.Duration // control/timeoutsmtpd: a whole command line, a reply's write
	MinDataRate int           // control/mindatarate: bytes a second a message must come at
	MaxSession  time.Duration // control/maxsessiontime; 0 = no limit
	MaxJunk     int           // control/maxjunk: NOOP RSET VRFY HELP between messages; 0 = no limit
	GreetDelay  time.Duration // control/greetdelay: wait this long for a client that talks first
	AuthLimit   *AuthLimiter  // AUTH failures an address across sessions; nil = per session only

	Domains     *relay.Domains     // rcpthosts + morercpthosts
	BadMailFrom *Patterns          // control/badmailfrom
	BadRcptTo   *Patterns          // control/badrcptto
	Recipients  Recipients         // nil: recipients are not checked
	Verifier    Verifier           // nil: no recipient callouts
	RBL         RBL                // nil: no DNSBL
	Greylist    Greylist           // nil: no greylisting
	Auth        Authenticator      // nil: no SMTP AUTH
	Limits      *ratelimit.Limiter // counts the client's RATE_ limits; nil: none counted
	MsgAuth     *authcheck.Checker // nil: no SPF, DKIM, DMARC, ARC (gw-auth(5))
	Milters     []milter.Milter    // control/milters, in order; MILTERS picks among them
	// Quarantine is where a message DMARC quarantines is held (the
	// instance's quarantine/, gw-scan's); nil: such a message is queued
	// with its X-Gw-Quarantine mark, as control/dmarcquarantine "tag".
	Quarantine *scan.QuarantineDir

	TLS         *tls.Config // nil: no STARTTLS
	ImplicitTLS bool        // TLS from the first byte (port 465)

	Log *logline.Logger
	// Explain, when set, is told each policy decision in words, passes
	// included: gw-smtpd's session test (--test-session) prints them
	// between the replies. nil in service.
	Explain func(line string)
}

// Recipients knows the valid recipients of the accepted domains.
type Recipients interface {
	// Valid reports whether local@domain exists; a domain without a list
	// accepts every local part.
	Valid(local, domain string) (bool, error)
}

// Verifier asks the internal host that owns a domain whether a
// recipient exists (a callout; lib/callout).
type Verifier interface {
	// Verify returns the verdict on local@domain and, for the log, where
	// it came from (the host's reply, "cached", or why it is unverified).
	Verify(local, domain string) (Verdict, string)
}

// Verdict is a Verifier's answer.
type Verdict byte

// Verdicts. Only Exists and Unknown are final; Unverified is answered
// with a temporary error.
const (
	NotVerified Verdict = iota // the domain is not verified by callout
	Exists
	Unknown
	Unverified
)

// RBL looks a client up in DNS block lists.
type RBL interface {
	// Lookup returns the first listing of ip, or nil. An error is logged;
	// the client is then treated as not listed (fail open).
	Lookup(ip string) (*Listing, error)
}

// Listing is one DNSBL answer, lib/rbl's: the checker knows nothing of
// SMTP, the session words the refusal.
type Listing = rbl.Listing

// Greylist decides on (client, sender, recipient) triplets.
type Greylist interface {
	// Check reports whether the triplet may pass now, recording it.
	Check(ip, from, rcpt string) (bool, error)
}

// Authenticator verifies SMTP AUTH credentials.
type Authenticator interface {
	// Check reports whether the password is right; an error is a
	// temporary failure of the checker.
	Check(user, password string) (bool, error)
}

// Client is what a listener knows about one connection (tcpserver.Client).
type Client = tcpserver.Client

// ClientFromEnv builds a Client from environment lookups
// (tcpserver.ClientFromEnv).
func ClientFromEnv(lookup func(string) (string, bool)) Client {
	return tcpserver.ClientFromEnv(lookup)
}
