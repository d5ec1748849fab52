package smtpd

import (
	"crypto/tls"
	"strconv"
	"time"

	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/relay"
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
	Timeout     time.Duration // control/timeoutsmtpd, per read and write

	Domains     *relay.Domains // rcpthosts + morercpthosts
	BadMailFrom *Patterns      // control/badmailfrom
	BadRcptTo   *Patterns      // control/badrcptto
	Recipients  Recipients     // nil: recipients are not checked
	RBL         RBL            // nil: no DNSBL
	Greylist    Greylist       // nil: no greylisting
	Auth        Authenticator  // nil: no SMTP AUTH

	TLS         *tls.Config // nil: no STARTTLS
	ImplicitTLS bool        // TLS from the first byte (port 465)

	Log *logline.Logger
}

// Recipients knows the valid recipients of the accepted domains.
type Recipients interface {
	// Valid reports whether local@domain exists; a domain without a list
	// accepts every local part.
	Valid(local, domain string) (bool, error)
}

// RBL looks a client up in DNS block lists.
type RBL interface {
	// Lookup returns the first listing of ip, or nil. An error is logged;
	// the client is then treated as not listed (fail open).
	Lookup(ip string) (*Listing, error)
}

// Listing is one DNSBL answer.
type Listing struct {
	Zone      string
	Text      string // the TXT record, when there is one
	Permanent bool   // refuse with 553 rather than 451
}

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

// Client is what a listener knows about one connection: the environment
// tcpserver sets (or the standalone listener computes the same way), with
// the ACL rule's assignments applied.
type Client struct {
	RemoteIP      string // TCPREMOTEIP
	RemotePort    string // TCPREMOTEPORT
	RemoteHost    string // TCPREMOTEHOST, when HasRemoteHost
	HasRemoteHost bool
	RemoteInfo    string // TCPREMOTEINFO, when HasRemoteInfo
	HasRemoteInfo bool
	LocalIP       string // TCPLOCALIP
	LocalHost     string // TCPLOCALHOST

	Relay        bool   // RELAYCLIENT is set (even empty)
	RelayAppend  string // its value, appended to every recipient (qmail)
	RBLSMTPD     string // rblsmtpd's variable, when HasRBLSMTPD
	HasRBLSMTPD  bool
	Databytes    int64 // DATABYTES, when HasDatabytes
	HasDatabytes bool
	NoGreylist   bool // GW_NOGREYLIST is set

	Rule     string           // the ACL rule that applied, for the log
	Injector handoff.Injector // nil: chosen from the environment
}

// ClientFromEnv builds a Client from environment lookups (os.LookupEnv
// under tcpserver; the computed environment when standalone).
func ClientFromEnv(lookup func(string) (string, bool)) Client {
	get := func(k string) string { v, _ := lookup(k); return v }
	var c Client
	c.RemoteIP = get("TCPREMOTEIP")
	c.RemotePort = get("TCPREMOTEPORT")
	c.RemoteHost, c.HasRemoteHost = lookup("TCPREMOTEHOST")
	c.RemoteInfo, c.HasRemoteInfo = lookup("TCPREMOTEINFO")
	c.LocalIP = get("TCPLOCALIP")
	c.LocalHost = get("TCPLOCALHOST")
	c.RelayAppend, c.Relay = lookup("RELAYCLIENT")
	c.RBLSMTPD, c.HasRBLSMTPD = lookup("RBLSMTPD")
	if v, ok := lookup("DATABYTES"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			c.Databytes, c.HasDatabytes = n, true
		}
	}
	_, c.NoGreylist = lookup("GW_NOGREYLIST")
	c.Rule = get("GW_ACLRULE")
	c.Injector = handoff.Select(get)
	return c
}
