// Package route decides where a recipient domain's mail goes: a per-domain
// route from the control files (smtproutes, qmtproutes, lmtproutes, with
// qmail's suffix matching and default ":" route), else the domain's MX
// records, else its address records.
//
// Lookup is pure table work and costs no DNS; Hosts does the DNS part for
// a route that names a relay by name, or for MX delivery.
package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gw/lib/alabel"
)

// Proto is the protocol a route speaks.
type Proto string

// Protocols, with their default ports.
const (
	SMTP Proto = "smtp" // port 25 (or control/smtpport for MX delivery)
	QMTP Proto = "qmtp" // port 209
	LMTP Proto = "lmtp" // port 24
)

// DefaultPort returns p's well-known port.
func (p Proto) DefaultPort() int {
	switch p {
	case QMTP:
		return 209
	case LMTP:
		return 24
	}
	return 25
}

// Route is where mail for one domain goes. A zero Relay means MX delivery
// (an empty route value, as in "example.com:", also means that).
type Route struct {
	Proto Proto
	Relay string // host name or IP literal (brackets removed); "" = MX
	Port  int    // 0 = the protocol's default
}

// MaxLine bounds a route line; a longer one is refused.
const MaxLine = 1024

// Table is one route file parsed: keys are lowercased domains, ".suffix"
// entries, or "" for the default route.
type Table struct {
	proto  Proto
	routes map[string]Route
}

// Parse parses the lines of a route file (control.List already dropped
// comments and empty lines) for protocol proto. Syntax, per line:
//
//	domain:relay[:port]   relay a host name, an IPv4 literal, or [literal]
//	domain:[ipv6]:port    IPv6 only in brackets
//	domain:relay;port     s/qmail's form, also accepted
//	domain:               no route: MX delivery (an exception to ":relay")
//
// The key is everything before the first ':'. An error names the line.
func Parse(proto Proto, lines []string) (*Table, error) {
	t := &Table{proto: proto, routes: make(map[string]Route, len(lines))}
	for n, line := range lines {
		key, val, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		key = domainKey(key)
		if _, dup := t.routes[key]; dup {
			continue // qmail's constmap: the first entry wins
		}
		r := Route{Proto: proto}
		if val != "" {
			r.Relay, r.Port, err = parseRelay(val)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
		}
		t.routes[key] = r
	}
	return t, nil
}

func parseLine(line string) (key, val string, err error) {
	if len(line) > MaxLine {
		return "", "", fmt.Errorf("longer than %d bytes", MaxLine)
	}
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", "", fmt.Errorf("no ':' in %q", line)
	}
	key = strings.ToLower(strings.TrimSpace(line[:i]))
	if strings.ContainsAny(key, " \t\x00") {
		return "", "", fmt.Errorf("blank in domain %q", key)
	}
	return key, strings.TrimSpace(line[i+1:]), nil
}

// parseRelay parses "relay[:port]", "[literal][:port]" or "relay;port".
func parseRelay(v string) (string, int, error) {
	host, port := v, ""
	switch {
	case strings.HasPrefix(v, "["):
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("unclosed '[' in %q", v)
		}
		host, port = v[1:end], v[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("bad address literal %q", host)
		}
		if port != "" {
			if port[0] != ':' && port[0] != ';' {
				return "", 0, fmt.Errorf("junk after ']' in %q", v)
			}
			port = port[1:]
		}
	default:
		if i := strings.IndexAny(v, ":;"); i >= 0 {
			host, port = v[:i], v[i+1:]
		}
		if host == "" || strings.ContainsAny(host, " \t[]\x00") {
			return "", 0, fmt.Errorf("bad relay %q", host)
		}
	}
	p := 0
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("bad port %q", port)
		}
		p = n
	}
	return strings.ToLower(host), p, nil
}

// domainKey is the form a route file's key and a looked-up domain are
// compared in: lower case, an internationalized domain by its A-labels,
// so that a route written "xn--mnchen-3ya.de" or "münchen.de" takes mail
// for either spelling of the address (an SMTPUTF8 client sends U-labels,
// an older one A-labels). A name with no A-label stays as written.
func domainKey(d string) string {
	d = strings.ToLower(d)
	if a, err := alabel.Domain(d); err == nil {
		return a
	}
	return d
}

// Lookup finds the route for domain: the domain itself, then each
// ".suffix", then the default "" entry; ok is false when nothing matched.
func (t *Table) Lookup(domain string) (Route, bool) {
	if t == nil {
		return Route{}, false
	}
	d := domainKey(domain)
	if r, ok := t.routes[d]; ok {
		return r, true
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			if r, ok := t.routes[d[i:]]; ok {
				return r, true
			}
		}
	}
	r, ok := t.routes[""]
	return r, ok
}

// Routes are the route tables in the order they are consulted at each
// suffix level: lmtproutes, qmtproutes, smtproutes (s/qmail consults
// qmtproutes before smtproutes).
type Routes []*Table

// Lookup returns the route for domain: the most specific key wins across
// the tables, and at equal specificity the earlier table. No match is MX
// delivery over SMTP.
func (rs Routes) Lookup(domain string) Route {
	d := domainKey(domain)
	keys := []string{d}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			keys = append(keys, d[i:])
		}
	}
	keys = append(keys, "")
	for _, k := range keys {
		for _, t := range rs {
			if t == nil {
				continue
			}
			if r, ok := t.routes[k]; ok {
				return r
			}
		}
	}
	return Route{Proto: SMTP}
}

// Destination names where a route leads, for concurrency limits and
// backoff: the relay for an artificial route, else the domain.
func (r Route) Destination(domain string) string {
	if r.Relay == "" {
		return strings.ToLower(domain)
	}
	port := r.Port
	if port == 0 {
		port = r.Proto.DefaultPort()
	}
	return string(r.Proto) + ":" + r.Relay + ":" + strconv.Itoa(port)
}
