package smtpserver

import (
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a basic code, an enhanced code (RFC 3463,
// "x.y.z") and a text. It is also an error, so a policy's SASL server can
// return one and have it answered as it is.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// R builds a reply. The enhanced code must agree with the basic code's
// class, or R panics: a reply table with a typo must not reach a client.
func R(code int, enhanced, text string) *Reply {
	if code < 200 || code > 599 || !enhancedOf(code, enhanced) {
		panic("smtpserver.R: bad reply " + strconv.Itoa(code) + " " + enhanced)
	}
	return &Reply{Code: code, Enhanced: enhanced, Text: text}
}

// enhancedOf reports whether e is an enhanced status code (RFC 3463:
// class.subject.detail, each of 1 to 3 digits) of code's class. It makes
// no string: a listener builds a reply a message.
func enhancedOf(code int, e string) bool {
	class, rest, ok := strings.Cut(e, ".")
	if !ok || len(class) != 1 || int(class[0]-'0') != code/100 {
		return false
	}
	subject, detail, ok := strings.Cut(rest, ".")
	return ok && digits(subject) && digits(detail)
}

func digits(s string) bool {
	if len(s) == 0 || len(s) > 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (r *Reply) Error() string { return r.Line() }

// Line is the reply as sent, without CRLF.
func (r *Reply) Line() string {
	return strconv.Itoa(r.Code) + " " + r.Enhanced + " " + r.Text
}

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// The replies the core gives on its own. Details of a refusal go to the
// log, never to the client.
var (
	ErrSyntax        = R(500, "5.5.2", "syntax error")
	ErrLineTooLong   = R(500, "5.5.2", "line too long")
	ErrLineLimit     = R(421, "4.7.0", "line too long, closing connection")
	ErrUnimplemented = R(502, "5.5.1", "unimplemented")
	ErrNoArgs        = R(501, "5.5.4", "no arguments allowed")
	ErrArgRequired   = R(501, "5.5.4", "argument required")
	ErrHeloFirst     = R(503, "5.5.1", "send HELO or EHLO first")
	ErrNestedMail    = R(503, "5.5.1", "MAIL already given")
	ErrNoMail        = R(503, "5.5.1", "send MAIL first")
	ErrNoRcpt        = R(503, "5.5.1", "send RCPT first")
	ErrInChunks      = R(503, "5.5.1", "BDAT transfer under way, finish it or RSET")
	ErrBadParam      = R(501, "5.5.4", "malformed parameter")
	ErrUnknownParam  = R(555, "5.5.4", "unsupported parameter")
	ErrBadAuthParam  = R(501, "5.5.4", "malformed AUTH parameter")
	ErrBadBody       = R(555, "5.5.4", "unsupported BODY type")
	ErrBadPath       = R(501, "5.5.4", "syntax error in the address")
	ErrTooBig        = R(552, "5.3.4", "sorry, that message size exceeds my databytes limit")
	ErrTooManyRcpt   = R(452, "4.5.3", "too many recipients")
	ErrTooManyErrors = R(421, "4.7.0", "too many errors, closing connection")
	ErrTooManyJunk   = R(421, "4.7.0", "too many commands without mail, closing connection")
	ErrBareLine      = R(451, "4.5.2", "bare LF or CR in message, see https://cr.yp.to/docs/smtplf.html")
	ErrTimeout       = R(451, "4.4.2", "timeout, closing connection")
	ErrSessionTime   = R(421, "4.4.2", "session too long, closing connection")
	ErrShutdown      = R(421, "4.3.2", "service shutting down")
	ErrLocal         = R(451, "4.3.0", "local error in processing")
	ErrInternal      = R(421, "4.3.0", "internal error, closing connection")
	ErrTLSFirst      = R(530, "5.7.0", "must issue a STARTTLS command first")
	ErrRequireTLS    = R(530, "5.7.10", "REQUIRETLS needs a TLS session")
	ErrAuthDone      = R(503, "5.5.1", "already authenticated")
	ErrAuthMech      = R(504, "5.5.4", "unrecognized authentication type")
	ErrAuthSyntax    = R(501, "5.5.2", "cannot decode authentication data")
	ErrAuthCancelled = R(501, "5.0.0", "authentication cancelled")
	ErrAuthFailed    = R(535, "5.7.8", "authentication failed")
	ErrBadChunk      = R(501, "5.5.4", "syntax: BDAT size [LAST]")
)

// countsAsError reports the replies that count towards MaxErrors: syntax
// and sequence errors (refused recipients are the policy's to count).
func countsAsError(code int) bool {
	switch code {
	case 500, 501, 502, 503, 504, 530, 555:
		return true
	}
	return false
}
