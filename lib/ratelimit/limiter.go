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
// down), it counts in Host, the host's own file, instead; when that fails
// too (its lock held past the timeout), in Local, this process's memory.
// A host then limits on its own counts, as if it were alone, rather than
// letting everything through or refusing everyone, and a session never
// waits on a lock for long. Local must not be nil.
type Limiter struct {
	Store state.Store // nil: Host, then Local
	Host  state.Store // nil: Local only after Store
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

// count counts key in the first store that answers; local is whether
// that was not Store (or Host, when there is no Store).
func (l *Limiter) count(key string, per time.Duration) (n int64, reset time.Time, local bool) {
	for i, s := range l.stores() {
		n, reset, err := s.Count(key, per)
		if err == nil {
			return n, reset, i > 0
		}
		l.warn(key, err)
	}
	n, reset, _ = l.Local.Count(key, per)
	return n, reset, true
}

// stores are the stores tried before Local, in order.
func (l *Limiter) stores() []state.Store {
	var ss []state.Store
	for _, s := range []state.Store{l.Store, l.Host} {
		if s != nil {
			ss = append(ss, s)
		}
	}
	return ss
}

// warn logs a store's failure; a shared server's going down is logged
// once by the store itself.
func (l *Limiter) warn(key string, err error) {
	if !errors.Is(err, state.ErrDown) && l.Log != nil {
		l.Log.Warning("ratelimit", "key", key, "err", err)
	}
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
	for _, s := range l.stores() {
		err := s.Put("ban:"+who, val, ban.Per)
		if err == nil {
			return true
		}
		l.warn("ban:"+who, err)
	}
	l.Local.Put("ban:"+who, val, ban.Per)
	return true
}

// Banned returns when who's ban ends, if who is banned, in any of the
// stores. A store that cannot be read bans no one (the others still do).
func (l *Limiter) Banned(who string) (time.Time, bool) {
	var v []byte
	var ok bool
	for _, s := range l.stores() {
		if v, ok, _ = s.Get("ban:" + who); ok {
			break
		}
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
