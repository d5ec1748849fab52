package smtpd

import (
	"bytes"
	"encoding/base64"
	"strings"
	"time"
)

// Limits on SMTP AUTH.
const (
	MaxAuthFailures = 3               // failures a session before errTooManyAuth
	authFailDelay   = 2 * time.Second // wait after each failure, times the count
	maxAuthLine     = 1024            // bytes of one base64 line
)

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
		// authzid (parts[0]) is ignored: a user acts only as itself.
		user, pass, ok = string(parts[1]), string(parts[2]), true
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
