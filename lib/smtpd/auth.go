package smtpd

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"gw/lib/smtpserver"
)

// Limits on SMTP AUTH.
const (
	MaxAuthFailures = 3               // failures a session before errTooManyAuth
	authFailDelay   = 2 * time.Second // wait after each failure, times the count
)

// Defaults of the control files for AUTH failures across sessions,
// documented in gw-smtpd(8).
const (
	DefaultMaxAuthFail    = 10  // maxauthfail: failures an address in the window
	DefaultAuthFailWindow = 900 // authfailwindow, seconds
	maxAuthTracked        = 100000
)

// AuthLimiter counts AUTH failures by client address across the sessions
// of one process, so a guesser cannot reset the per-session limit by
// reconnecting: at Max failures within Window the address is refused AUTH
// until its oldest failure leaves the window. Only a standalone listener
// sees all sessions; under tcpserver each process has its own, and the
// per-session limit is all there is. IPv6 clients count by /64.
type AuthLimiter struct {
	Max    int
	Window time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	fails map[netip.Prefix][]time.Time
}

func authKey(ip string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

func (l *AuthLimiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// recent drops failures older than the window; l.mu is held.
func (l *AuthLimiter) recent(k netip.Prefix, now time.Time) []time.Time {
	f := l.fails[k]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.Window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.fails, k)
		return nil
	}
	l.fails[k] = f
	return f
}

// SetLimits changes Max and Window (control files read again).
func (l *AuthLimiter) SetLimits(max int, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Max, l.Window = max, window
}

// Blocked reports whether ip has used up its failures.
func (l *AuthLimiter) Blocked(ip string) bool {
	k, ok := authKey(ip)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Max > 0 && len(l.recent(k, l.now())) >= l.Max
}

// Failed records a failure from ip.
func (l *AuthLimiter) Failed(ip string) {
	k, ok := authKey(ip)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max <= 0 {
		return
	}
	now := l.now()
	if l.fails == nil {
		l.fails = map[netip.Prefix][]time.Time{}
	}
	if len(l.fails) >= maxAuthTracked { // bounded memory: forget the idle
		for p := range l.fails {
			l.recent(p, now)
		}
	}
	f := append(l.recent(k, now), now)
	if len(f) > l.Max {
		f = f[len(f)-l.Max:]
	}
	l.fails[k] = f
}

// authDelay is a variable so tests need not wait.
var authDelay = authFailDelay

// Auth starts AUTH PLAIN or AUTH LOGIN; the core offers it over TLS
// only and runs the exchange (334 challenges, base64, "*"). The password
// is never logged, the user name is, by logline's quoting.
func (s *session) Auth(ss *smtpserver.Session, mech string) (sasl.Server, *smtpserver.Reply) {
	if s.cfg.AuthLimit != nil && s.cfg.AuthLimit.Blocked(s.cl.RemoteIP) {
		s.log("warning", "auth", "result", "blocked", "reason", "maxauthfail")
		return nil, errAuthBlocked // 421: the core ends the session
	}
	switch mech {
	case "PLAIN":
		// RFC 4616: [authzid] NUL user NUL password. A user acts only
		// as itself: an authorization identity other than the one
		// authenticated fails (section 2).
		return sasl.NewPlainServer(func(authzid, user, pass string) error {
			if authzid != "" && authzid != user {
				return s.authFailed(user, "authzid_mismatch")
			}
			return s.authCheck(user, pass)
		}), nil
	case "LOGIN":
		return &loginServer{s: s}, nil
	}
	return nil, errAuthMech
}

// loginServer is the LOGIN mechanism: "Username:", then "Password:".
type loginServer struct {
	s    *session
	step int
	user []byte
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user, l.step = resp, 2
		return []byte("Password:"), false, nil
	}
	if err := l.s.authCheck(string(l.user), string(resp)); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

// authCheck verifies the credentials; nil means authenticated.
func (s *session) authCheck(user, pass string) error {
	if user == "" || strings.ContainsAny(user, "\x00\r\n") || strings.ContainsRune(pass, 0) {
		return s.authFailed(user, "bad_input")
	}
	s.waiting()
	good, err := s.cfg.Auth.Check(user, pass)
	if err != nil {
		s.log("warning", "auth", "user", user, "result", "tempfail", "err", err)
		return errAuthTemp
	}
	if !good {
		return s.authFailed(user, "bad_password")
	}
	s.authUser, s.ss.AuthUser = user, user
	s.log("info", "auth", "user", user, "result", "ok")
	return nil
}

// authFailed counts a failure and returns its reply: 535, or 421 at
// MaxAuthFailures (the core then ends the session).
func (s *session) authFailed(user, reason string) error {
	s.authFail++
	if s.cfg.AuthLimit != nil {
		s.cfg.AuthLimit.Failed(s.cl.RemoteIP)
	}
	s.log("info", "auth", "user", user, "result", "failed", "reason", reason, "failures", s.authFail)
	s.waiting()
	time.Sleep(time.Duration(s.authFail) * authDelay) // slows down guessing on one connection
	if s.authFail >= MaxAuthFailures {
		return errTooManyAuth
	}
	return errAuthFailed
}
