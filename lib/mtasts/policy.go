// Package mtasts is MTA-STS (RFC 8461) for gw-send: a domain's policy,
// discovered by the _mta-sts TXT record, fetched over HTTPS with the
// RFC's limits, cached in the instance's state/ directory, and the test
// of an MX host against it.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Mode is a policy's mode.
type Mode string

const (
	Enforce Mode = "enforce" // mail goes only to a matching MX with a verified certificate
	Testing Mode = "testing" // failures are reported (TLS-RPT), mail goes anyway
	None    Mode = "none"    // no policy
)

// Policy is a parsed policy file (RFC 8461 3.2).
type Policy struct {
	Mode   Mode
	MX     []string // patterns: a name, or "*.suffix" for one label below suffix
	MaxAge int64    // seconds
}

// MaxAge bounds max_age (RFC 8461 3.2: at most 31557600).
const MaxAge = 31557600

// MaxSize is the largest policy body read (RFC 8461 3.3: 64 KiB).
const MaxSize = 64 * 1024

// Parse reads a policy body: key: value lines, CRLF or LF.
func Parse(body string) (*Policy, error) {
	if len(body) > MaxSize {
		return nil, errors.New("policy over 64 KiB")
	}
	p := &Policy{MaxAge: -1}
	var version string
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %q is not key: value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			switch Mode(v) {
			case Enforce, Testing, None:
				p.Mode = Mode(v)
			default:
				return nil, fmt.Errorf("unknown mode %q", v)
			}
		case "max_age":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 10 {
				return nil, fmt.Errorf("bad max_age %q", v)
			}
			p.MaxAge = min(n, MaxAge)
		case "mx":
			if !validPattern(v) {
				return nil, fmt.Errorf("bad mx pattern %q", v)
			}
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
		}
		// other keys are extensions: ignored (3.2)
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("version %q, want STSv1", version)
	case p.Mode == "":
		return nil, errors.New("no mode")
	case p.MaxAge < 0:
		return nil, errors.New("no max_age")
	case p.Mode != None && len(p.MX) == 0:
		return nil, errors.New("no mx")
	}
	return p, nil
}

func validPattern(v string) bool {
	n := strings.TrimPrefix(v, "*.")
	if n == "" || len(n) > 253 || strings.Contains(n, "..") || n[0] == '.' {
		return false
	}
	for _, c := range n {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// Matches reports whether MX host name host is one the policy names
// (RFC 8461 4.1: a wildcard covers exactly one leftmost label).
func (p *Policy) Matches(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range p.MX {
		if suffix, ok := strings.CutPrefix(m, "*."); ok {
			if label, rest, ok := strings.Cut(h, "."); ok && label != "" && rest == suffix {
				return true
			}
			continue
		}
		if h == m {
			return true
		}
	}
	return false
}

// ParseTXT reads a _mta-sts TXT record (RFC 8461 3.1) and returns its
// id; ok is false for a record that is not STSv1.
func ParseTXT(txt string) (id string, ok bool) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", false
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k == "id" && v != "" && len(v) <= 32 && isAlnum(v) {
			return v, true
		}
	}
	return "", false
}

func isAlnum(s string) bool {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Lines is the policy as RFC 8460's policy-string gives it: one string
// a line.
func (p *Policy) Lines() []string {
	out := []string{"version: STSv1", "mode: " + string(p.Mode)}
	for _, m := range p.MX {
		out = append(out, "mx: "+m)
	}
	return append(out, "max_age: "+strconv.FormatInt(p.MaxAge, 10))
}
