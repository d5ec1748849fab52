package smtpd

import (
	"path"
	"strings"
)

// Patterns is an address blocklist in badmailfrom's syntax: each entry is
// a whole address or "@domain" (qmail), or a pattern with '*' and '?'
// wildcards matched against the whole address ("*@*.example.com",
// "spam-*@example.org"). Matching ignores case. A nil list matches
// nothing, and the null address never matches.
type Patterns struct {
	exact    map[string]bool
	wildcard []string
}

// NewPatterns returns the list of entries.
func NewPatterns(entries []string) *Patterns {
	p := &Patterns{exact: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(e)
		if strings.ContainsAny(e, "*?") {
			p.wildcard = append(p.wildcard, e)
		} else {
			p.exact[e] = true
		}
	}
	return p
}

// Match reports whether addr is on the list.
func (p *Patterns) Match(addr string) bool {
	if p == nil || addr == "" {
		return false
	}
	a := strings.ToLower(addr)
	if p.exact[a] {
		return true
	}
	if i := strings.LastIndexByte(a, '@'); i >= 0 && p.exact[a[i:]] {
		return true
	}
	for _, w := range p.wildcard {
		// path.Match treats '/' and '[' specially; addresses in a
		// blocklist are matched byte for byte otherwise.
		if ok, _ := path.Match(w, a); ok {
			return true
		}
	}
	return false
}
