// Package mailbox parses the paths of SMTP's MAIL and RCPT commands into
// the one canonical address gw queues, routes and decides relaying on.
//
// It is strict where leniency lets a client steer mail: the domain is what
// follows the only '@' outside quotes, checked as a host name or an address
// literal, with one trailing dot removed and lower-cased; a source route is
// accepted and dropped (RFC 5321 C); a quoted local part is accepted only
// when its content is a valid dot-atom once unquoted, so the address
// means the same quoted or not and nothing downstream must re-quote it.
// Characters that ask for sender-specified routing ('%', '!', and an '@'
// inside the local part) are kept and reported (Routed), for the relay
// decision to refuse them.
//
// ParseRFC5321 is the same parser without gw-smtpd's restrictions: what a
// next hop parses. Check and Path (stored.go) are the other direction: the
// one definition of an address gw may queue, and its one writer.
package mailbox

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"gw/lib/alabel"
)

// Limits from RFC 5321 4.5.3.1.
const (
	MaxLocal  = 64
	MaxDomain = 255
	MaxPath   = 256 // the whole path, angle brackets included
)

// Address is a parsed mailbox. The null path has Null set and nothing else.
type Address struct {
	Local   string
	Domain  string // lower case, no trailing dot; "" for <postmaster>
	Literal bool   // Domain is an address literal: [192.0.2.1] or [IPv6:…]
	Null    bool   // the null reverse-path <>
}

// DoubleBounce is qmail's envelope sender of a double bounce, "#@[]": not
// an address anyone can answer, so that its failure bounces nowhere.
// Listeners accept it as a sender though it does not parse (an empty
// address literal), so that double bounces can pass through gateways.
const DoubleBounce = "#@[]"

// String returns the address as queued: local@domain, "" for the null
// path, the bare local part for <postmaster>.
func (a Address) String() string {
	if a.Null {
		return ""
	}
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Postmaster reports whether a is RFC 5321's domainless <postmaster>.
func (a Address) Postmaster() bool { return a.Domain == "" && !a.Null }

// Routed reports whether the local part asks for sender-specified routing
// (user%host@domain, host!user@domain, "user@host"@domain): a host that
// honours it would relay. Postfix strips its own domain from
// "user@host"@domain and relays to host for a client it trusts, so an '@'
// in a quoted local part routes as surely as '%' does.
func (a Address) Routed() bool { return strings.ContainsAny(a.Local, "%!@") }

// LiteralIP returns the IP of an address literal.
func (a Address) LiteralIP() (netip.Addr, bool) {
	if !a.Literal {
		return netip.Addr{}, false
	}
	s := strings.TrimSuffix(strings.TrimPrefix(a.Domain, "["), "]")
	if v6, ok := strings.CutPrefix(s, "ipv6:"); ok {
		ip, err := netip.ParseAddr(v6)
		// A zone (fe80::1%eth0) is no part of RFC 5321's syntax, and
		// would name one of this host's interfaces.
		return ip, err == nil && ip.Is6() && !ip.Is4In6() && ip.Zone() == ""
	}
	ip, err := netip.ParseAddr(s)
	return ip, err == nil && ip.Is4()
}

// Error kinds, so a listener can choose its reply.
var (
	ErrSyntax   = errors.New("bad address syntax")
	ErrTooLong  = errors.New("address too long")
	ErrNonASCII = errors.New("non-ASCII address without SMTPUTF8")
	ErrNoDomain = errors.New("address without a domain")
	ErrQuoted   = errors.New("quoted local part that needs its quotes")
)

// ParsePath splits the argument of MAIL FROM: or RCPT TO: (the text after
// the colon) into the path and what follows it (the ESMTP parameters).
// The path is <…>, optionally after blanks; an address without angle
// brackets is accepted up to the first blank, as qmail does.
func ParsePath(arg string) (path, rest string, err error) {
	return splitPath(arg, MaxPath)
}

// splitPath is ParsePath with a limit on the path's length (0: none).
func splitPath(arg string, limit int) (path, rest string, err error) {
	arg = strings.TrimLeft(arg, " ")
	if !strings.HasPrefix(arg, "<") {
		path, rest, _ = strings.Cut(arg, " ")
		if path == "" {
			return "", "", ErrSyntax
		}
		return path, rest, nil
	}
	quoted := false
	for i := 1; i < len(arg); i++ {
		switch c := arg[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			rest = arg[i+1:]
			if rest != "" && rest[0] != ' ' {
				return "", "", ErrSyntax
			}
			if limit > 0 && i+1 > limit {
				return "", "", ErrTooLong
			}
			return arg[1:i], strings.TrimLeft(rest, " "), nil
		}
	}
	return "", "", ErrSyntax
}

// Parse parses a path's content (without angle brackets) as gw-smtpd
// accepts it. An empty path is the null path; a path without '@' is
// accepted only as "postmaster" (any case), which the caller allows for
// RCPT only.
func Parse(p string) (Address, error) {
	return parse(p, true)
}

// ParseUTF8 is Parse for a transaction that said SMTPUTF8 (RFC 6531):
// the local part may hold UTF-8 and the domain U-labels, with gw-smtpd's
// other restrictions. The domain is kept as written, so the address is
// stored as the client gave it; routing asks DNS by its A-labels.
func ParseUTF8(p string) (Address, error) {
	a, err := parse(p, false)
	if err != nil {
		return a, err
	}
	if len(p) > MaxPath-2 || len(a.Local) > MaxLocal {
		return Address{}, ErrTooLong
	}
	if !a.Null && !a.Postmaster() && !dotAtom(a.Local) {
		return Address{}, ErrQuoted
	}
	if _, err := alabel.Domain(a.Domain); err != nil && !a.Literal {
		return Address{}, ErrSyntax
	}
	return a, nil
}

// ParseRFC5321 parses a path's content as RFC 5321 defines it (with RFC
// 6531's UTF-8), without gw-smtpd's restrictions: a quoted local part may
// hold any printable character, and no length limit applies. It is what
// the next hop of a path Path wrote reads, so tests hold Path to it.
func ParseRFC5321(p string) (Address, error) {
	return parse(p, false)
}

// parse is Parse when strict, ParseRFC5321 otherwise.
func parse(p string, strict bool) (Address, error) {
	if strict && len(p) > MaxPath-2 {
		return Address{}, ErrTooLong
	}
	for i := 0; i < len(p); i++ {
		if p[i] >= 0x80 && strict {
			return Address{}, ErrNonASCII
		}
		if p[i] < ' ' || p[i] == 0x7f {
			return Address{}, ErrSyntax
		}
	}
	if !utf8.ValidString(p) {
		return Address{}, ErrSyntax
	}
	if p == "" {
		return Address{Null: true}, nil
	}
	if p[0] == '@' { // source route: @a,@b:mailbox
		i := strings.IndexByte(p, ':')
		if i < 0 {
			return Address{}, ErrSyntax
		}
		for _, hop := range strings.Split(p[1:i], ",") {
			hop = strings.TrimPrefix(hop, "@")
			if _, _, ok := domain(hop); !ok {
				return Address{}, ErrSyntax
			}
		}
		p = p[i+1:]
	}
	local, rest, err := localPart(p, strict)
	if err != nil {
		return Address{}, err
	}
	if rest == "" {
		if strings.EqualFold(local, "postmaster") {
			return Address{Local: "postmaster"}, nil
		}
		return Address{}, ErrNoDomain
	}
	if rest[0] != '@' {
		return Address{}, ErrSyntax
	}
	d, lit, ok := domain(rest[1:])
	if !ok {
		return Address{}, ErrSyntax
	}
	if strict && len(local) > MaxLocal || len(d) > MaxDomain {
		return Address{}, ErrTooLong
	}
	return Address{Local: local, Domain: d, Literal: lit}, nil
}

// localPart returns the local part, unquoted, and the text after it. A
// strict caller takes a quoted local part only when its content needs no
// quotes.
func localPart(p string, strict bool) (string, string, error) {
	if p == "" {
		return "", "", ErrSyntax
	}
	var local string
	var rest string
	if p[0] == '"' {
		var b strings.Builder
		i := 1
		for ; i < len(p) && p[i] != '"'; i++ {
			if p[i] == '\\' {
				i++
				if i == len(p) {
					return "", "", ErrSyntax
				}
			}
			b.WriteByte(p[i])
		}
		if i == len(p) {
			return "", "", ErrSyntax
		}
		local, rest = b.String(), p[i+1:]
		if strict && !dotAtom(local) {
			return "", "", ErrQuoted
		}
		return local, rest, nil
	}
	i := strings.IndexByte(p, '@')
	if i < 0 {
		local, rest = p, ""
	} else {
		local, rest = p[:i], p[i:]
	}
	if !dotAtom(local) {
		return "", "", ErrSyntax
	}
	return local, rest, nil
}

// dotAtom reports whether s is RFC 5322's dot-atom-text.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !atext(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

func atext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	// RFC 6531 adds UTF-8 to atext; Parse refuses it before it gets here.
	return c >= 0x80 || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// domain checks d as a host name (one trailing dot allowed and removed) or
// an address literal, and returns it lower-cased.
func domain(d string) (string, bool, bool) {
	d = asciiLower(d)
	if strings.HasPrefix(d, "[") {
		a := Address{Domain: d, Literal: true}
		if !strings.HasSuffix(d, "]") {
			return "", false, false
		}
		if _, ok := a.LiteralIP(); !ok {
			return "", false, false
		}
		return d, true, true
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > MaxDomain {
		return "", false, false
	}
	// label by label without a slice of them: an address is parsed for
	// each MAIL and RCPT
	for rest, more := d, true; more; {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false, false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			// UTF-8 is an RFC 6531 U-label; Parse refuses it earlier.
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return "", false, false
			}
		}
	}
	return d, false, true
}

// asciiLower lower-cases A to Z only: a U-label is left as written, so
// that what is compared is what was sent.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}
