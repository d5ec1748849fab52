// Package ratelimit counts a client's connections, messages and
// recipients against the limits its tcprules rule sets, in the shape
// s/qmail gives per-client settings: one environment variable a limit,
//
//	RATE_CONN=30/60s   connections
//	RATE_MSG=100/1h    messages (transactions: each MAIL)
//	RATE_RCPT=500/1h   recipients
//	RATE_BY=net        count by the client's /24 (IPv4) or /64 (IPv6),
//	                   not by its address (RATE_BY=ip, the default)
//	RATE_BAN=3/1h      ban a client refused this many times in this
//	                   window, for the window (off unless set)
//
// An authenticated client's messages and recipients count against its
// user, wherever it connects from. The counts live in a state.Store, so
// hosts sharing one count together.
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is at most N events in Per. The zero Rate is no limit.
type Rate struct {
	N   int64
	Per time.Duration
}

// Set reports whether r limits anything.
func (r Rate) Set() bool { return r.N > 0 && r.Per > 0 }

func (r Rate) String() string { return strconv.FormatInt(r.N, 10) + "/" + r.Per.String() }

// maxWindow bounds a window: a typo of "30/60000h" must not ban a client
// for years.
const maxWindow = 7 * 24 * time.Hour

// ParseRate reads N/WINDOW: a count, a slash, and a window as a number
// of seconds or a duration with a unit (s, m, h): "30/60", "30/60s",
// "100/1h".
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want COUNT/WINDOW, as 30/60s", s)
	}
	count, err := strconv.ParseInt(n, 10, 64)
	if err != nil || count < 1 {
		return Rate{}, fmt.Errorf("rate %q: the count must be a positive number", s)
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(per, 10, 64); err == nil {
		d = time.Duration(secs) * time.Second
	} else if d, err = time.ParseDuration(per); err != nil || strings.ContainsAny(per, "-+") {
		return Rate{}, fmt.Errorf("rate %q: the window must be seconds or a duration as 60s, 10m, 1h", s)
	}
	if d < time.Second || d > maxWindow {
		return Rate{}, fmt.Errorf("rate %q: the window must be between 1s and %v", s, maxWindow)
	}
	return Rate{N: count, Per: d.Round(time.Second)}, nil
}

// Rules are one client's limits.
type Rules struct {
	Conn, Msg, Rcpt Rate
	Ban             Rate // refusals before a ban, and the ban's length
	ByNet           bool // count by /24 or /64
}

// Any reports whether any limit is set.
func (r Rules) Any() bool { return r.Conn.Set() || r.Msg.Set() || r.Rcpt.Set() }

// FromEnv reads a client's rules from its environment. A malformed
// variable is an error naming it; the other limits still apply, since
// a typo must not lift them all.
func FromEnv(lookup func(string) (string, bool)) (Rules, error) {
	var r Rules
	var errs []error
	for _, v := range []struct {
		name string
		to   *Rate
	}{{"RATE_CONN", &r.Conn}, {"RATE_MSG", &r.Msg}, {"RATE_RCPT", &r.Rcpt}, {"RATE_BAN", &r.Ban}} {
		s, ok := lookup(v.name)
		if !ok || s == "" {
			continue
		}
		rate, err := ParseRate(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.name, err))
			continue
		}
		*v.to = rate
	}
	switch by, _ := lookup("RATE_BY"); by {
	case "", "ip":
	case "net":
		r.ByNet = true
	default:
		errs = append(errs, fmt.Errorf("RATE_BY=%q: want ip or net", by))
	}
	return r, errors.Join(errs...)
}
