package smtpserver

import (
	"strconv"
	"strings"
)

// paramTable is the ESMTP parameters one verb takes (RFC 5321 4.1.2's
// esmtp-param), each with what it does to the command's record. A
// parameter outside the table is 555; one given twice, or without the
// value it needs, is 501.
//
// RFC 3461's DSN parameters (RET and ENVID in mailParams, NOTIFY and
// ORCPT in rcptParams) are read by lib/dsn, with the RFC's checks, into
// Mail.DSN and Rcpt.DSN; "DSN" is among the EHLO keywords (hello).
type paramTable[T any] map[string]func(c *conn, t T, value string, has bool) (*Reply, string)

var mailParams = paramTable[*Mail]{
	"SIZE": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		n, err := strconv.ParseInt(v, 10, 64)
		if !has || err != nil || n < 0 || len(v) > 20 {
			return ErrBadParam, "size_syntax"
		}
		if c.cfg.MaxMessage > 0 && n > c.cfg.MaxMessage {
			return ErrTooBig, "size"
		}
		m.Size = n
		return nil, ""
	},
	"BODY": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		switch v = strings.ToUpper(v); v {
		case "7BIT", "8BITMIME":
			m.Body = v
			return nil, ""
		}
		return ErrBadBody, "body"
	},
	"SMTPUTF8": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		if has {
			return ErrBadParam, "smtputf8_value"
		}
		m.UTF8 = true
		return nil, ""
	},
	// RFC 4954 5: AUTH= is accepted and ignored; its value is never
	// trusted, logged or copied anywhere (Exim CVE-2020-28021). It must
	// be xtext whose decoding holds no control byte.
	"AUTH": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		d, ok := xtext(v)
		if !has || !ok || strings.ContainsFunc(d, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return ErrBadAuthParam, "auth_param"
		}
		return nil, ""
	},
	"RET": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		return dsnParam(m.DSN.Param, "RET", v, has)
	},
	"ENVID": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		return dsnParam(m.DSN.Param, "ENVID", v, has)
	},
	// RFC 8689 4.1: REQUIRETLS is taken only on a TLS session (and
	// advertised only there, hello); in the clear it is 530 5.7.10, so
	// a client cannot be led to believe the message went protected.
	"REQUIRETLS": func(c *conn, m *Mail, v string, has bool) (*Reply, string) {
		if has {
			return ErrBadParam, "requiretls_value"
		}
		if c.s.TLS == nil {
			return ErrRequireTLS, "requiretls_without_tls"
		}
		m.RequireTLS = true
		return nil, ""
	},
}

var rcptParams = paramTable[*Rcpt]{
	"NOTIFY": func(c *conn, r *Rcpt, v string, has bool) (*Reply, string) {
		return dsnParam(r.DSN.Param, "NOTIFY", v, has)
	},
	"ORCPT": func(c *conn, r *Rcpt, v string, has bool) (*Reply, string) {
		return dsnParam(r.DSN.Param, "ORCPT", v, has)
	},
}

// dsnParam gives DSN parameter k to lib/dsn (dsn.Mail.Param or
// dsn.Rcpt.Param); a refusal names the parameter.
func dsnParam(param func(k, v string, has bool) (bool, error), k, v string, has bool) (*Reply, string) {
	if _, err := param(k, v, has); err != nil {
		return R(501, "5.5.4", "malformed "+k+" parameter"), "dsn_" + strings.ToLower(k)
	}
	return nil, ""
}

// apply reads "KEY[=VALUE] ..." into t.
func (p paramTable[T]) apply(c *conn, t T, params string) (*Reply, string) {
	seen := map[string]bool{}
	for _, f := range strings.Fields(params) {
		k, v, has := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if k == "" || !esmtpKeyword(k) || has && v == "" {
			return ErrBadParam, "param_syntax"
		}
		if seen[k] {
			return ErrBadParam, "param_twice"
		}
		seen[k] = true
		set, ok := p[k]
		if !ok {
			return ErrUnknownParam, "unknown_param"
		}
		if r, why := set(c, t, v, has); r != nil {
			return r, why
		}
	}
	return nil, ""
}

// esmtpKeyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), upper-cased.
func esmtpKeyword(k string) bool {
	for i := 0; i < len(k); i++ {
		b := k[i]
		if !(b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' && i > 0) {
			return false
		}
	}
	return true
}

// xtext decodes RFC 3461's xtext ("+XX" hex escapes, printable ASCII
// otherwise, no '+' or '=' bare).
func xtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '+':
			if i+3 > len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 2
		case ch < '!' || ch > '~' || ch == '=':
			return "", false
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), true
}
