package ratelimit

import (
	"errors"
	"net/netip"
	"strconv"
	"time"

	"gw/lib/logline"
	"gw/lib/state"
)

// Limiter counts events in Store. When Store fails (a shared server is
// down), it counts in Local instead: a host then limits on its own
// counts, as if it were alone, rather than letting everything through or
// refusing everyone. Local must not be nil.
type Limiter struct {
	Store state.Store // nil: Local only
	Local *state.Memory
	Log   *logline.Logger
}

// Kinds of events, the first part of every counter's key.
const (
	Conn = "conn"
	Msg  = "msg"
	Rcpt = "rcpt"
)

// Noun names what kind counts, for replies.
func Noun(kind string) string {
	return map[string]string{Conn: "connections", Msg: "messages", Rcpt: "recipients"}[kind]
}

// Verdict is the outcome of one Take.
type Verdict struct {
	Over  bool
	Count int64
	Reset time.Time // when the window ends
	Local bool      // counted locally: the shared store failed
}

// Take counts one event of kind for who and reports whether it is over r.
func (l *Limiter) Take(kind, who string, r Rate) Verdict {
	n, reset, local := l.count("rl:"+kind+":"+who, r.Per)
	return Verdict{Over: n > r.N, Count: n, Reset: reset, Local: local}
}

func (l *Limiter) count(key string, per time.Duration) (int64, time.Time, bool) {
	if l.Store != nil {
		n, reset, err := l.Store.Count(key, per)
		if err == nil {
			return n, reset, false
		}
		if !errors.Is(err, state.ErrDown) && l.Log != nil {
			l.Log.Warning("ratelimit", "key", key, "err", err)
		}
	}
	n, reset, _ := l.Local.Count(key, per)
	return n, reset, true
}

// Refused records a refusal of who; once ban's count is reached in its
// window, who is banned for the window. It returns whether who is now
// banned.
func (l *Limiter) Refused(who string, ban Rate) bool {
	if !ban.Set() {
		return false
	}
	n, _, _ := l.count("ban:n:"+who, ban.Per)
	if n < ban.N {
		return false
	}
	until := time.Now().Add(ban.Per)
	val := []byte(strconv.FormatInt(until.Unix(), 10))
	if l.Store == nil || l.Store.Put("ban:"+who, val, ban.Per) != nil {
		l.Local.Put("ban:"+who, val, ban.Per)
	}
	return true
}

// Banned returns when who's ban ends, if who is banned. A store that
// cannot be read bans no one (the local list still does).
func (l *Limiter) Banned(who string) (time.Time, bool) {
	var v []byte
	var ok bool
	if l.Store != nil {
		v, ok, _ = l.Store.Get("ban:" + who)
	}
	if !ok {
		v, ok, _ = l.Local.Get("ban:" + who)
	}
	if !ok {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil { // distrust what another host wrote: a bad value bans for no longer than a minute
		return time.Now().Add(time.Minute), true
	}
	return time.Unix(secs, 0), true
}

// Who is the key a client counts under: its address, or its /24 or /64
// with byNet.
func Who(ip string, byNet bool) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip:" + ip
	}
	a = a.Unmap()
	if !byNet {
		return "ip:" + a.String()
	}
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return "net:" + p.String()
}

// User is the key an authenticated user counts under.
func User(name string) string { return "user:" + name }
