package qmtp

import (
	"fmt"
	"time"

	"gw/lib/ratelimit"
)

// The per-client rate limits (RATE_ variables of the client's rule;
// lib/ratelimit), as gw-smtpd counts them. QMTP has no greeting to
// refuse: a connection over its limit, or from a banned client, is
// closed before a package is read, which the client takes as a
// temporary failure. A message or a recipient over its limit is answered
// Z with the time the window resets.

// limitConnect reports whether the connection must be closed unread.
func (s *session) limitConnect() bool {
	if s.cl.RatesErr != nil {
		s.log("warning", "ratelimit", "err", s.cl.RatesErr)
	}
	l, r := s.cfg.Limits, s.cl.Rates
	if l == nil {
		return false
	}
	who := ratelimit.Who(s.cl.RemoteIP, r.ByNet)
	if until, ok := l.Banned(who); ok {
		s.log("info", "ratelimit", "who", who, "result", "banned", "until", until.Unix())
		return true
	}
	return r.Conn.Set() && s.over(ratelimit.Conn, r.Conn) != ""
}

// limitMsg returns the Z answer of a message over its limit, or "".
func (s *session) limitMsg() string {
	if s.cfg.Limits == nil || !s.cl.Rates.Msg.Set() {
		return ""
	}
	return s.over(ratelimit.Msg, s.cl.Rates.Msg)
}

// limitRcpt returns the Z answer of a recipient over its limit, or "".
func (s *session) limitRcpt() string {
	if s.cfg.Limits == nil || !s.cl.Rates.Rcpt.Set() {
		return ""
	}
	return s.over(ratelimit.Rcpt, s.cl.Rates.Rcpt)
}

func (s *session) over(kind string, r ratelimit.Rate) string {
	who := ratelimit.Who(s.cl.RemoteIP, s.cl.Rates.ByNet)
	v := s.cfg.Limits.Take(kind, who, r)
	if !v.Over {
		return ""
	}
	wait := max(time.Until(v.Reset).Round(time.Second), time.Second)
	banned := s.cfg.Limits.Refused(who, s.cl.Rates.Ban)
	s.log("info", "ratelimit", "kind", kind, "who", who, "count", v.Count, "limit", r.String(),
		"result", "refused", "reset", int(wait.Seconds()), "local", v.Local, "banned", banned)
	return fmt.Sprintf("Z4.7.0 too many %s from %s (limit %d per %v), try again in %d seconds", ratelimit.Noun(kind), who, r.N, r.Per, int(wait.Seconds()))
}
