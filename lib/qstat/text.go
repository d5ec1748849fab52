package qstat

import (
	"strings"
	"time"
)

// safe replaces every byte outside printable ASCII with '_', as
// qmail-qread does: addresses and error texts come from peers, and a
// terminal or a line-based parser must not be steered by them.
func safe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] > 126 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 32 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// date822 formats t as qmail-qread prints an arrival: date822fmt without
// its zone, in UTC, day not padded, followed by "GMT".
func date822(t time.Time) string {
	return t.UTC().Format("2 Jan 2006 15:04:05") + " GMT"
}

// domainOf returns the lowercased part of addr after its last '@', or
// addr itself when it has none (postmaster, the null sender).
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		addr = addr[i+1:]
	}
	return strings.ToLower(addr)
}
