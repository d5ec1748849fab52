package dmarc

import (
	"fmt"
	"net/netip"
	"strings"
)

// Action is what the gateway does with a message after DMARC.
type Action int

// The actions. Their numbers are not stored anywhere.
const (
	Accept Action = iota
	Quarantine
	Reject
)

func (a Action) String() string { return [...]string{"accept", "quarantine", "reject"}[a] }

// Enforcement is a face's override of what domains ask
// (control/dmarcpolicy).
type Enforcement int

// The enforcements.
const (
	Enforce        Enforcement = iota // as the domain's policy says
	QuarantineOnly                    // p=reject quarantined, never refused
	ReportOnly                        // evaluated and reported, nothing done
)

// ParseEnforcement reads enforce, quarantine or none.
func ParseEnforcement(s string) (Enforcement, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enforce", "":
		return Enforce, nil
	case "quarantine":
		return QuarantineOnly, nil
	case "none":
		return ReportOnly, nil
	}
	return Enforce, fmt.Errorf("dmarc policy %q: want enforce, quarantine or none", s)
}

// Forwarders are the hosts and sealers whose mail is not judged by DMARC
// when it fails: mailing lists and forwarders break SPF and often DKIM
// while the mail they pass on is genuine. One entry a line of
// control/dmarcforwarders: an address or a network (the forwarder's
// client address), or a domain (an ARC sealer whose chain must pass).
type Forwarders struct {
	nets    []netip.Prefix
	sealers map[string]bool
}

// ParseForwarders reads the lines of control/dmarcforwarders; '#'
// starts a comment. A line that is neither an address, a network nor a
// domain name is an error naming it.
func ParseForwarders(lines []string) (Forwarders, error) {
	f := Forwarders{sealers: make(map[string]bool)}
	for n, line := range lines {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.Contains(line, "/"):
			p, err := netip.ParsePrefix(line)
			if err != nil {
				return f, fmt.Errorf("line %d: %v", n+1, err)
			}
			f.nets = append(f.nets, p.Masked())
		default:
			if a, err := netip.ParseAddr(line); err == nil {
				// Clients are compared unmapped (Trusted): so is a listed
				// IPv4-mapped address.
				a = a.Unmap()
				f.nets = append(f.nets, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			if !strings.Contains(line, ".") || strings.ContainsAny(line, " \t@:") {
				return f, fmt.Errorf("line %d: %q is not an address, a network or a domain", n+1, line)
			}
			f.sealers[strings.ToLower(strings.TrimSuffix(line, "."))] = true
		}
	}
	return f, nil
}

// Trusted reports whether a message came through a trusted forwarder:
// from one of the listed client addresses, or with an ARC chain that
// passes and was last sealed by a listed domain.
func (f Forwarders) Trusted(client netip.Addr, arcValue, sealer string) (bool, string) {
	client = client.Unmap()
	for _, p := range f.nets {
		if p.Contains(client) {
			return true, "client " + client.String() + " is a trusted forwarder"
		}
	}
	if arcValue == "pass" && f.sealers[strings.ToLower(sealer)] {
		return true, "ARC chain sealed by trusted forwarder " + sealer
	}
	return false, ""
}

// Decision is what happens to the message, and why.
type Decision struct {
	Action Action
	Reason string
}

// Decide turns a result into an action: a failing message is rejected or
// quarantined as its domain's policy asks, unless the face enforces less
// or a trusted forwarder passed it on. Errors and passes are accepted: a
// domain whose record cannot be read has asked for nothing.
func Decide(r Result, e Enforcement, f Forwarders, client netip.Addr, arcValue, sealer string) Decision {
	if r.Value != Fail {
		return Decision{Accept, "dmarc=" + r.Value}
	}
	if ok, why := f.Trusted(client, arcValue, sealer); ok {
		return Decision{Accept, "dmarc=fail, accepted: " + why}
	}
	var a Action
	switch r.Policy {
	case PolicyReject:
		a = Reject
	case PolicyQuarantine:
		a = Quarantine
	default:
		return Decision{Accept, "dmarc=fail, policy none"}
	}
	switch {
	case e == ReportOnly:
		return Decision{Accept, "dmarc=fail, policy " + r.Policy + " not enforced on this face"}
	case e == QuarantineOnly && a == Reject:
		return Decision{Quarantine, "dmarc=fail, policy reject quarantined on this face"}
	}
	return Decision{a, "dmarc=fail, policy " + r.Policy + " of " + r.RecordAt}
}

// RejectText is the text of the 550 5.7.1 reply to a rejected message.
func RejectText(r Result) string {
	return fmt.Sprintf("DMARC: the policy of %s refuses mail from %s that neither SPF nor DKIM authenticates", r.RecordAt, r.From)
}
