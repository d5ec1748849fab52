package smtpd

import (
	"fmt"
	"time"

	"gw/lib/ratelimit"
	"gw/lib/smtpserver"
)

// The per-client rate limits (RATE_ variables of the client's tcprules
// rule; lib/ratelimit). A connection over its limit, or from a banned
// client, gets 421 and the session ends; a message or a recipient over
// its limit gets 451 and the session goes on, so a client that waits
// for the time the reply names gets through. Every reply says when the
// window resets.

// limitConnect counts the connection; it is asked before the greeting.
func (s *session) limitConnect() *smtpserver.Reply {
	if s.cl.RatesErr != nil {
		s.log("warning", "ratelimit", "err", s.cl.RatesErr)
	}
	l, r := s.cfg.Limits, s.cl.Rates
	if l == nil || (!r.Any() && !r.Ban.Set()) {
		return nil
	}
	who := ratelimit.Who(s.cl.RemoteIP, r.ByNet)
	if until, ok := l.Banned(who); ok {
		s.log("info", "ratelimit", "who", who, "result", "banned", "until", until.Unix())
		return reply(421, "4.7.0", fmt.Sprintf("%s is banned for repeated excess, until %s", who, until.UTC().Format(time.RFC3339)))
	}
	if !r.Conn.Set() {
		return nil
	}
	return s.over(ratelimit.Conn, who, r.Conn, 421)
}

// limitMail counts a message, against the authenticated user if there
// is one, else the client.
func (s *session) limitMail() *smtpserver.Reply {
	if s.cfg.Limits == nil || !s.cl.Rates.Msg.Set() {
		return nil
	}
	return s.over(ratelimit.Msg, s.rateWho(), s.cl.Rates.Msg, 451)
}

// limitRcpt counts a recipient, as limitMail counts a message.
func (s *session) limitRcpt() *smtpserver.Reply {
	if s.cfg.Limits == nil || !s.cl.Rates.Rcpt.Set() {
		return nil
	}
	return s.over(ratelimit.Rcpt, s.rateWho(), s.cl.Rates.Rcpt, 451)
}

func (s *session) rateWho() string {
	if s.authUser != "" {
		return ratelimit.User(s.authUser)
	}
	return ratelimit.Who(s.cl.RemoteIP, s.cl.Rates.ByNet)
}

// over takes one event and returns the refusal when it is over the
// limit; a refusal counts towards the client's ban.
func (s *session) over(kind, who string, r ratelimit.Rate, code int) *smtpserver.Reply {
	s.waiting() // the counter may be shared, over the network
	v := s.cfg.Limits.Take(kind, who, r)
	if !v.Over {
		return nil
	}
	wait := max(time.Until(v.Reset).Round(time.Second), time.Second)
	banned := s.cfg.Limits.Refused(who, s.cl.Rates.Ban)
	s.log("info", "ratelimit", "kind", kind, "who", who, "count", v.Count, "limit", r.String(),
		"result", "refused", "code", code, "reset", int(wait.Seconds()), "local", v.Local, "banned", banned)
	return reply(code, "4.7.0", fmt.Sprintf("too many %s from %s (limit %d per %v), try again in %d seconds",
		ratelimit.Noun(kind), who, r.N, r.Per, int(wait.Seconds())))
}
