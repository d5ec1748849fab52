// Package dsn is the SMTP service extension for delivery status
// notifications (RFC 3461): the MAIL parameters RET and ENVID, the RCPT
// parameters NOTIFY and ORCPT, and the xtext they are written in. It
// parses them as a client sends them, with the RFC's checks, and writes
// them back in one canonical form, the form gw keeps in the envelope and
// gives a next hop that offers DSN.
//
// What the parameters ask for is honoured elsewhere (gw-send's reports);
// this package only says what was asked.
package dsn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 3461: an ENVID value is at most 100 characters
// (section 4.4), an ORCPT value at most 500 (section 4.2), counted as
// written, xtext and all.
const (
	MaxEnvID = 100
	MaxORcpt = 500
)

// Notify is the set of conditions a recipient's NOTIFY asks a report
// for. The zero value means NOTIFY was not given: the MTA's own choice
// (gw: failures, and delays when control/delaywarning is set).
type Notify uint8

// The NOTIFY keywords. Never excludes the others.
const (
	NotifySuccess Notify = 1 << iota
	NotifyFailure
	NotifyDelay
	NotifyNever
)

var notifyWords = []struct {
	bit  Notify
	word string
}{{NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}, {NotifyNever, "NEVER"}}

// Ret is what MAIL's RET asks a failure report to return of the message.
// The zero value means RET was not given (gw returns the headers).
type Ret uint8

const (
	RetFull Ret = 1 + iota // the whole message
	RetHdrs                // its header section only
)

// Mail is the DSN part of a MAIL command.
type Mail struct {
	Ret   Ret
	EnvID string // ENVID, decoded: printable ASCII; "" when not given
}

// Rcpt is the DSN part of a RCPT command.
type Rcpt struct {
	Notify Notify
	// ORcptType is ORCPT's address type as the client wrote it
	// ("rfc822", "utf-8", ...), "" when ORCPT was not given; ORcpt is
	// its address, decoded.
	ORcptType string
	ORcpt     string
}

// IsZero reports a MAIL without DSN parameters.
func (m Mail) IsZero() bool { return m == Mail{} }

// IsZero reports a RCPT without DSN parameters.
func (r Rcpt) IsZero() bool { return r == Rcpt{} }

// Wants reports whether a recipient with this NOTIFY gets a report of
// condition c (NotifySuccess, NotifyFailure or NotifyDelay). Without
// NOTIFY, failures are reported and delays too (RFC 3461 4.1 leaves
// DELAY to the MTA when NOTIFY is absent: gw-send's delaywarning decides);
// successes never are.
func (n Notify) Wants(c Notify) bool {
	if n == 0 {
		return c != NotifySuccess
	}
	return n&c != 0
}

// ErrSyntax is wrapped by every refusal of a parameter's value.
var ErrSyntax = errors.New("bad DSN parameter")

func syntax(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// ParseNotify parses NOTIFY's value: NEVER alone, or a comma-separated
// list of SUCCESS, FAILURE and DELAY, each at most once, in any case.
func ParseNotify(v string) (Notify, error) {
	var n Notify
	for _, w := range strings.Split(v, ",") {
		var bit Notify
		for _, nw := range notifyWords {
			if strings.EqualFold(w, nw.word) {
				bit = nw.bit
			}
		}
		if bit == 0 {
			return 0, syntax("NOTIFY keyword %q", w)
		}
		if n&bit != 0 {
			return 0, syntax("NOTIFY names %s twice", strings.ToUpper(w))
		}
		n |= bit
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, syntax("NOTIFY=NEVER with other keywords")
	}
	return n, nil
}

// String is NOTIFY's value in canonical form: upper case, in the order
// SUCCESS, FAILURE, DELAY; "" for the zero value.
func (n Notify) String() string {
	var w []string
	for _, nw := range notifyWords {
		if n&nw.bit != 0 {
			w = append(w, nw.word)
		}
	}
	return strings.Join(w, ",")
}

// ParseRet parses RET's value, FULL or HDRS in any case.
func ParseRet(v string) (Ret, error) {
	switch {
	case strings.EqualFold(v, "FULL"):
		return RetFull, nil
	case strings.EqualFold(v, "HDRS"):
		return RetHdrs, nil
	}
	return 0, syntax("RET value %q", v)
}

func (r Ret) String() string {
	switch r {
	case RetFull:
		return "FULL"
	case RetHdrs:
		return "HDRS"
	}
	return ""
}

// ParseEnvID parses ENVID's value: xtext of at most MaxEnvID characters
// that decodes to printable ASCII (RFC 3461 4.4).
func ParseEnvID(v string) (string, error) {
	if len(v) > MaxEnvID {
		return "", syntax("ENVID longer than %d characters", MaxEnvID)
	}
	id, err := DecodeXtext(v)
	if err != nil {
		return "", fmt.Errorf("ENVID: %w", err)
	}
	if id == "" {
		return "", syntax("ENVID is empty")
	}
	if !printable(id) {
		return "", syntax("ENVID holds a byte outside printable ASCII")
	}
	return id, nil
}

// ParseORcpt parses ORCPT's value, addr-type ";" xtext, at most MaxORcpt
// characters (RFC 3461 4.2). The address must decode to printable ASCII,
// except for the utf-8 type (RFC 6533), whose \x{HEX} escapes are
// undone and whose address must be valid UTF-8 without control
// characters. The type is returned as written: types are
// case-insensitive, and a next hop gets what the client said.
func ParseORcpt(v string) (typ, addr string, err error) {
	if len(v) > MaxORcpt {
		return "", "", syntax("ORCPT longer than %d characters", MaxORcpt)
	}
	typ, enc, ok := strings.Cut(v, ";")
	if !ok {
		return "", "", syntax("ORCPT without ';'")
	}
	if !isAtom(typ) {
		return "", "", syntax("ORCPT address type %q", typ)
	}
	utf8Type := strings.EqualFold(typ, "utf-8")
	addr, err = decodeXtext(enc, utf8Type)
	if err != nil {
		return "", "", fmt.Errorf("ORCPT: %w", err)
	}
	if addr == "" {
		return "", "", syntax("ORCPT address is empty")
	}
	if utf8Type {
		if addr, err = decodeUTF8Escapes(addr); err != nil {
			return "", "", err
		}
		return typ, addr, nil
	}
	if !printable(addr) {
		return "", "", syntax("ORCPT address holds a byte outside printable ASCII")
	}
	return typ, addr, nil
}

// isAtom reports an RFC 5322 atom: atext characters only.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// printable reports graphic ASCII and the space: what RFC 3461 allows in
// a decoded ENVID or rfc822 ORCPT, and what a DSN field can carry.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeUTF8Escapes undoes RFC 6533's utf-8-addr-xtext escapes
// (\x{HEX}, 1 to 6 digits) and checks the result: valid UTF-8 and no
// control characters. The address may also come as utf-8-addr-unitext,
// UTF-8 as it is, from a client that said SMTPUTF8.
func decodeUTF8Escapes(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], `\x{`) {
			end := strings.IndexByte(s[i:], '}')
			hex := ""
			if end > 3 {
				hex = s[i+3 : i+end]
			}
			var r rune
			if hex == "" || len(hex) > 6 || !allHex(hex) {
				return "", syntax("ORCPT escape %q", s[i:min(len(s), i+12)])
			}
			fmt.Sscanf(hex, "%x", &r)
			if !utf8.ValidRune(r) {
				return "", syntax("ORCPT escape for U+%X", r)
			}
			b.WriteRune(r)
			i += end + 1
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", syntax("ORCPT address is not UTF-8")
	}
	for _, r := range out {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return "", syntax("ORCPT address holds a control character")
		}
	}
	return out, nil
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// encodeUTF8Escapes writes an address for the utf-8 type in ASCII:
// every non-ASCII character as \x{HEX} (RFC 6533's utf-8-addr-xtext
// before xtext), and a backslash that would start one as \x{5C}.
func encodeUTF8Escapes(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 0x80:
			fmt.Fprintf(&b, `\x{%X}`, r)
		case r == '\\':
			b.WriteString(`\x{5C}`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
