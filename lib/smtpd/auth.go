package smtpd

import (
	"bytes"
	"encoding/base64"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limits on SMTP AUTH.
const (
	MaxAuthFailures = 3               // failures a session before errTooManyAuth
	authFailDelay   = 2 * time.Second // wait after each failure, times the count
	maxAuthLine     = 1024            // bytes of one base64 line
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

// auth answers AUTH PLAIN and AUTH LOGIN, offered only over TLS. The
// password is never logged; the user name is, sanitized.
func (s *session) auth(arg string) {
	switch {
	case s.cfg.Auth == nil:
		s.protocolError(errUnimplemented)
		return
	case !s.tls:
		s.protocolError(errTLSFirst)
		return
	case s.authUser != "":
		s.protocolError(errAuthDone)
		return
	case s.inMail:
		s.protocolError(errNestedMail)
		return
	}
	if s.cfg.AuthLimit != nil && s.cfg.AuthLimit.Blocked(s.cl.RemoteIP) {
		s.log("warning", "auth", "result", "blocked", "reason", "maxauthfail")
		s.write(errAuthBlocked)
		s.quit = true
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	var user, pass string
	var ok bool
	switch strings.ToUpper(mech) {
	case "PLAIN":
		resp, r := s.authResponse(initial, "")
		if r {
			return
		}
		parts := bytes.Split(resp, []byte{0})
		if len(parts) != 3 {
			s.protocolError(errAuthSyntax)
			return
		}
		user, pass, ok = string(parts[1]), string(parts[2]), true
		// A user acts only as itself: an authorization identity other
		// than the one authenticated must fail (RFC 4616 section 2).
		if len(parts[0]) > 0 && string(parts[0]) != user {
			s.authFailed(user, "authzid_mismatch")
			return
		}
	case "LOGIN":
		u, r := s.authResponse(initial, "VXNlcm5hbWU6") // "Username:"
		if r {
			return
		}
		p, r := s.authResponse("", "UGFzc3dvcmQ6") // "Password:"
		if r {
			return
		}
		user, pass, ok = string(u), string(p), true
	default:
		s.protocolError(errAuthMech)
		return
	}
	if !ok {
		return
	}
	if user == "" || strings.ContainsAny(user, "\x00\r\n") || strings.ContainsRune(pass, 0) {
		s.authFailed(user, "bad_input")
		return
	}
	good, err := s.cfg.Auth.Check(user, pass)
	if err != nil {
		s.log("warning", "auth", "user", user, "result", "tempfail", "err", err)
		s.write(errAuthTemp)
		return
	}
	if !good {
		s.authFailed(user, "bad_password")
		return
	}
	s.authUser = user
	s.log("info", "auth", "user", user, "result", "ok")
	s.write(reply(235, "2.7.0", "authentication successful"))
}

func (s *session) authFailed(user, reason string) {
	s.authFail++
	if s.cfg.AuthLimit != nil {
		s.cfg.AuthLimit.Failed(s.cl.RemoteIP)
	}
	s.log("info", "auth", "user", user, "result", "failed", "reason", reason, "failures", s.authFail)
	time.Sleep(time.Duration(s.authFail) * authDelay) // slows down guessing on one connection
	if s.authFail >= MaxAuthFailures {
		s.write(errTooManyAuth)
		return
	}
	s.write(errAuthFailed)
}

// authResponse returns the decoded initial response, or asks with a 334
// challenge and reads the answer. done reports that a reply was already
// given (cancel, syntax error, lost connection).
func (s *session) authResponse(initial, challenge string) ([]byte, bool) {
	if initial == "" {
		s.bw.WriteString("334 " + challenge + "\r\n")
		if err := s.bw.Flush(); err != nil {
			s.quit = true
			return nil, true
		}
		line, err := s.readLine()
		if err != nil || len(line) > maxAuthLine {
			if err != nil && !isBadLine(err) {
				s.quit = true
				return nil, true
			}
			s.protocolError(errAuthSyntax)
			return nil, true
		}
		if line == "*" {
			s.write(errAuthCancelled)
			return nil, true
		}
		initial = line
	}
	if initial == "=" {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(initial)
	if err != nil {
		s.protocolError(errAuthSyntax)
		return nil, true
	}
	return b, false
}

func isBadLine(err error) bool { return err == errBadLine || err == errLongLine }
