// Package relay decides whether a client that may not relay may still give
// mail for a recipient: only when the recipient's domain is one the gateway
// accepts mail for (control/rcpthosts, control/morercpthosts), decided on
// exactly the domain delivery will use.
//
// The address comes from package mailbox, which already made that domain
// unique (the part after the one '@' outside quotes, source route dropped,
// trailing dot removed). What is left to refuse here is what would let the
// next hop pick another destination: sender-specified routing in the local
// part ('%', '!') and address literals.
//
// Unlike qmail, a missing rcpthosts accepts no domain: a gateway whose
// file went missing must close, not open.
package relay

import (
	"gw/lib/control"
	"gw/lib/mailbox"
)

// Verdict is the relay decision for one recipient.
type Verdict int

// Verdicts, each with its reason for the log.
const (
	Local       Verdict = iota // a domain the gateway accepts mail for
	NotLocal                   // any other domain: relaying
	Routed                     // %-hack or bang path in the local part
	Literal                    // an address literal
	NoRcptHosts                // control/rcpthosts is missing
)

var reasons = [...]string{"rcpthosts", "not_in_rcpthosts", "sender_routing", "address_literal", "no_rcpthosts"}

func (v Verdict) String() string { return reasons[v] }

// Domains is the set of accepted domains.
type Domains struct {
	hosts   control.Hosts
	present bool
}

// Load reads rcpthosts and morercpthosts from dir (both in rcpthosts
// syntax: "example.com" for the name itself, ".example.com" for names
// under it).
func Load(dir control.Dir) (*Domains, error) {
	list, present, err := dir.List("rcpthosts")
	if err != nil {
		return nil, err
	}
	more, _, err := dir.List("morercpthosts")
	if err != nil {
		return nil, err
	}
	return &Domains{hosts: control.NewHosts(append(list, more...)), present: present}, nil
}

// New returns the set of entries (for tests and tools).
func New(entries []string) *Domains {
	return &Domains{hosts: control.NewHosts(entries), present: true}
}

// Decide returns the verdict for recipient a from a client that may not
// relay. <postmaster> is the caller's to allow, before asking.
func (d *Domains) Decide(a mailbox.Address) Verdict {
	switch {
	case !d.present:
		return NoRcptHosts
	case a.Literal:
		return Literal
	case a.Routed():
		return Routed
	case a.Domain == "" || !d.hosts.Match(a.Domain):
		return NotLocal
	}
	return Local
}

// Accepts reports whether domain is one the gateway accepts mail for.
func (d *Domains) Accepts(domain string) bool { return d.present && d.hosts.Match(domain) }
