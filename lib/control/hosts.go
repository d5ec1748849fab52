package control

import "strings"

// Hosts is a domain list in rcpthosts' syntax: a line "example.com" matches
// that domain only, a line ".example.com" every domain below it (and not
// example.com itself). Matching ignores ASCII case.
type Hosts map[string]bool

// NewHosts builds a Hosts from list entries.
func NewHosts(entries []string) Hosts {
	h := make(Hosts, len(entries))
	for _, e := range entries {
		h[strings.ToLower(e)] = true
	}
	return h
}

// Match reports whether domain is in the list: the domain itself, then each
// suffix that starts at a dot, as qmail's rcpthosts check tries them.
func (h Hosts) Match(domain string) bool {
	d := strings.ToLower(domain)
	if h[d] {
		return true
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' && h[d[i:]] {
			return true
		}
	}
	return false
}
