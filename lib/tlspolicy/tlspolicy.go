// Package tlspolicy is gw-send's per-destination TLS policy: the control
// file tlspolicy, one line a destination, with the security levels an
// admin who ran Postfix knows (none, may, encrypt, dane, dane-only,
// verify, secure), the names a certificate must match, and a client
// certificate for destinations that ask for one. gw-send-tlspolicy.5
// documents the file; keep the two together.
package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"

	"gw/lib/alabel"
)

// Level is how much TLS a destination gets. The order matters: a level
// at or above Encrypt never sends mail in the clear.
type Level int

const (
	None     Level = iota // never STARTTLS
	May                   // STARTTLS when offered; the clear when it fails
	Encrypt               // TLS required, no certificate check
	Dane                  // DANE where DNSSEC-signed TLSA records exist, else may
	DaneOnly              // DANE required
	Verify                // TLS required, the certificate verified, names matched
	Secure                // as verify, matched against the next hop's domain by default
)

var levelNames = []string{"none", "may", "encrypt", "dane", "dane-only", "verify", "secure"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return "level(" + strconv.Itoa(int(l)) + ")"
	}
	return levelNames[l]
}

// ParseLevel reads a level by its name.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TLS level %q (none, may, encrypt, dane, dane-only, verify, secure)", s)
}

// Required reports whether mail at level l may never go in the clear.
// Dane is not: without usable TLSA records it is may.
func (l Level) Required() bool { return l == Encrypt || l >= DaneOnly }

// Entry is one line of the file: what one destination gets.
type Entry struct {
	Dest  string // "example.com", ".example.com", "[host]:port" or "[host]"
	Level Level
	// Match lists the names a certificate must carry at verify and
	// secure: a name, ".suffix" for any name below it, or the words
	// hostname (the server's own name), nexthop (the destination
	// domain or relay host) and dot-nexthop (any name below that).
	// Empty: verify's default is hostname, secure's nexthop and
	// dot-nexthop.
	Match    []string
	CertFile string // a client certificate (PEM), with KeyFile
	KeyFile  string
	Cert     *tls.Certificate // loaded from CertFile and KeyFile by Load
	Line     int              // where the entry is in the file
}

// Policy is the file's entries, keyed by destination, and the level of
// destinations it does not name.
type Policy struct {
	Default Level
	// Roots are the certificate authorities verify and secure trust:
	// control/tlscafile's, nil for the system's.
	Roots   *x509.CertPool
	entries map[string]*Entry
}

// MaxLines bounds the file: a policy is written by hand.
const MaxLines = 100000

// Parse reads the text of the tlspolicy file. Every line is checked; the
// first error names its line, and nothing of a file with an error is
// used: a policy half read would send mail in the clear that the admin
// wanted encrypted.
func Parse(text string, def Level) (*Policy, error) {
	p := &Policy{Default: def, entries: map[string]*Entry{}}
	for i, line := range strings.Split(text, "\n") {
		if i >= MaxLines {
			return nil, fmt.Errorf("more than %d lines", MaxLines)
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		e.Line = i + 1
		if old, ok := p.entries[e.Dest]; ok {
			return nil, fmt.Errorf("line %d: %s is already on line %d", i+1, e.Dest, old.Line)
		}
		p.entries[e.Dest] = e
	}
	return p, nil
}

func parseLine(line string) (*Entry, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, fmt.Errorf("%q: want a destination and a level", line)
	}
	dest, err := parseDest(f[0])
	if err != nil {
		return nil, err
	}
	lvl, err := ParseLevel(f[1])
	if err != nil {
		return nil, err
	}
	e := &Entry{Dest: dest, Level: lvl}
	for _, a := range f[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("%q: want name=value", a)
		}
		switch k {
		case "match":
			if lvl != Verify && lvl != Secure {
				return nil, fmt.Errorf("match= applies to verify and secure, not %s", lvl)
			}
			for _, n := range strings.Split(v, ":") {
				if n == "" || !validName(strings.TrimPrefix(n, ".")) {
					return nil, fmt.Errorf("match=%s: %q is not a host name", v, n)
				}
				e.Match = append(e.Match, strings.ToLower(n))
			}
		case "cert":
			e.CertFile = v
		case "key":
			e.KeyFile = v
		default:
			return nil, fmt.Errorf("unknown attribute %q (match, cert, key)", k)
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return nil, fmt.Errorf("cert= and key= go together")
	}
	return e, nil
}

// parseDest checks a destination and puts its names in lower case.
func parseDest(d string) (string, error) {
	d = domainKey(d)
	if strings.HasPrefix(d, "[") {
		host, rest, ok := strings.Cut(d[1:], "]")
		if !ok || !validName(host) {
			return "", fmt.Errorf("%q: want [host] or [host]:port", d)
		}
		if rest == "" {
			return d, nil
		}
		n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
		if !strings.HasPrefix(rest, ":") || err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: bad port", d)
		}
		return "[" + host + "]:" + strconv.Itoa(n), nil
	}
	if !validName(strings.TrimPrefix(d, ".")) {
		return "", fmt.Errorf("%q is not a domain", d)
	}
	return d, nil
}

// domainKey is the form a policy's destination and a looked-up domain
// are compared in, as routes compare theirs: lower case, an
// internationalized name by its A-labels, so that an entry written
// "xn--mnchen-3ya.de" or "münchen.de" holds for mail to either spelling
// of the address (an SMTPUTF8 client sends U-labels). Without this, a
// secure entry for an IDN domain would let U-label mail out at the
// default level. A name with no A-label stays as written (and a
// destination that is one fails validName).
func domainKey(d string) string {
	d = strings.ToLower(d)
	if a, err := alabel.Domain(d); err == nil {
		return a
	}
	return d
}

// validName accepts a host name or an IP address literal's inside: labels
// of letters, digits, hyphens and underscores, dots and colons between.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == ':':
		default:
			return false
		}
	}
	return !strings.Contains(s, "..") && s[0] != '.' && s[len(s)-1] != '.'
}

// Lookup finds the entry for mail to domain. relay is the host of an
// artificial route ("" for MX delivery) and port its port: "[relay]:port"
// and then "[relay]" are looked up first, as the relay is the next hop.
// Then the domain, then ".parent" for each parent domain. Nothing found:
// an entry with the default level.
func (p *Policy) Lookup(domain, relay string, port int) *Entry {
	if p == nil {
		return &Entry{Level: May}
	}
	relay = domainKey(relay)
	if relay != "" {
		for _, k := range []string{"[" + relay + "]:" + strconv.Itoa(port), "[" + relay + "]"} {
			if e, ok := p.entries[k]; ok {
				return e
			}
		}
	}
	d := domainKey(strings.TrimSuffix(domain, "."))
	if e, ok := p.entries[d]; ok {
		return e
	}
	for {
		_, parent, ok := strings.Cut(d, ".")
		if !ok {
			break
		}
		if e, ok := p.entries["."+parent]; ok {
			return e
		}
		d = parent
	}
	return &Entry{Level: p.Default}
}

// Entries lists the file's entries, for loading their certificates.
func (p *Policy) Entries() []*Entry {
	out := make([]*Entry, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e)
	}
	return out
}

// Names is what a certificate must match for e, for mail to nexthop (the
// destination domain, or the relay host) through server host.
func (e *Entry) Names(nexthop, host string) []string {
	m := e.Match
	if len(m) == 0 {
		m = []string{"hostname"}
		if e.Level == Secure {
			m = []string{"nexthop", "dot-nexthop"}
		}
	}
	var out []string
	for _, n := range m {
		switch n {
		// A certificate names a host by its A-labels.
		case "hostname":
			out = append(out, domainKey(host))
		case "nexthop":
			out = append(out, domainKey(nexthop))
		case "dot-nexthop":
			out = append(out, "."+domainKey(nexthop))
		default:
			out = append(out, n)
		}
	}
	return out
}
