package mailbox

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// The stored form of an address is what gw queues and hands between its
// programs: local@domain, the local part unquoted, the domain after the
// last '@' (qmail's form). QMTP and the qmail-queue interface carry it as
// raw bytes, so a peer can put anything in it; SMTP cannot: a path is
// <…> on a command line, and whatever in the address ends the path
// (a '>', a blank) turns the rest into ESMTP parameters of the next hop.
//
// Check is the one definition of an address gw accepts: every producer
// (gw-smtpd, gw-qmtpd, gw-queue and gw-queued, gw-scan) refuses what it
// refuses. Path is the one writer: every consumer (gw-send's SMTP, LMTP
// and QMTP transports, gw-scan's proxy) writes through it, and an address
// it cannot write fails for that recipient, never rewritten into another.

// ErrControl is an address holding a control character (below space, or
// DEL): no SMTP path can carry it, and it would corrupt a log line or a
// terminal later.
var ErrControl = errors.New("address holds a control character")

// Check reports whether a, in stored form, is an envelope address gw
// accepts: no control character, and writable as an RFC 5321 path (see
// Path). The null sender "" and the double-bounce sender pass.
func Check(a string) error {
	_, err := Path(a)
	return err
}

// Path returns stored address a as the content of an RFC 5321 path, the
// text between '<' and '>': the local part as it is when it is a
// dot-atom, as a quoted string otherwise ('"' and '\' escaped with '\',
// as qmail-remote quotes), then '@' and the domain as stored. The null
// path, the double-bounce sender and a bare "postmaster" are written as
// they are. An address whose domain is no host name or address literal,
// that holds a control character or invalid UTF-8, or that has no domain,
// cannot be written: Path returns an error and the caller fails it.
func Path(a string) (string, error) {
	for i := 0; i < len(a); i++ {
		if a[i] < ' ' || a[i] == 0x7f {
			return "", ErrControl
		}
	}
	if !utf8.ValidString(a) {
		return "", ErrSyntax
	}
	if a == "" || a == DoubleBounce {
		return a, nil
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		if strings.EqualFold(a, "postmaster") {
			return a, nil
		}
		return "", ErrNoDomain
	}
	local, dom := a[:at], a[at+1:]
	// A trailing dot is no part of RFC 5321's Domain; domain() would
	// drop it, and the next hop would read another string than stored.
	if _, _, ok := domain(dom); !ok || strings.HasSuffix(dom, ".") {
		return "", ErrSyntax
	}
	if dotAtom(local) {
		return a, nil
	}
	return quote(local) + "@" + dom, nil
}

// quote returns s as an RFC 5321 Quoted-string: every character but '"'
// and '\' is qtextSMTP once control characters are excluded.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
