// Package deliver is gw-send's transport side: sessions with a remote
// mail server that carry messages in two phases (start a transaction, add
// recipients one by one, send the body, then commit or abort), with a
// per-recipient outcome.
//
// SMTP and LMTP go through go-smtp's client (smtp.Client), over a
// connection gw dials itself. gw adds what that client lacks (see
// specs/go-smtp.md): a deadline on every read and write, the body's
// included (deadlineConn); a lone CR sent as a space (lib/dotstuff);
// STARTTLS after an EHLO with the instance's name, only when offered; a
// bound on what a server may send unasked; per-recipient outcomes and
// gw's error types. go-smtp's client does not pipeline: MAIL, each RCPT
// and DATA wait for their replies. A QMTP transport implements the same
// two interfaces.
package deliver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"gw/lib/dsn"
)

// Session is one connection to a mail server, able to carry several
// messages one after the other.
type Session interface {
	// Start begins a transaction for a message from sender (null sender
	// "") of size bytes, with the sender's DSN parameters (RET, ENVID),
	// which go to a server that offers DSN.
	Start(sender string, size int64, utf8 bool, d dsn.Mail) (Delivery, error)
	// OffersDSN reports whether the server takes DSN parameters (RFC
	// 3461): if so, what a recipient's NOTIFY asks is the next hop's to
	// honour, else gw-send's.
	OffersDSN() bool
	// Reusable reports whether another message may follow on this session.
	Reusable() bool
	// TLS reports whether the session is encrypted.
	TLS() bool
	// Close ends the session politely (QUIT); Kill drops it at once.
	Close() error
	Kill()
}

// Delivery is one message's transaction within a session.
type Delivery interface {
	// AddRcpt offers a recipient, with its DSN parameters (NOTIFY,
	// ORCPT) for a server that offers DSN; an error refuses that
	// recipient only.
	AddRcpt(to string, d dsn.Rcpt) error
	// Body sends the message; r's error aborts the transaction so that
	// nothing the receiver could take for a whole message reaches it.
	Body(r io.Reader) error
	// Commit ends the message and returns the outcome for each AddRcpt
	// call, in order: nil for delivered. When every recipient was refused,
	// Body sent nothing and Commit returns the refusals.
	Commit() ([]error, error)
	// Abort gives up the transaction; the session stays usable when it can.
	Abort()
}

// Stage is the step of a session an outcome comes from, named as the
// command the server answered (RFC 3464's Diagnostic-Code and the logs
// say it).
type Stage string

// The stages of an SMTP (LMTP) session.
const (
	StageConnect  Stage = "connect"
	StageGreeting Stage = "greeting"
	StageHello    Stage = "EHLO"
	StageTLS      Stage = "STARTTLS"
	StageMail     Stage = "MAIL FROM"
	StageRcpt     Stage = "RCPT TO"
	StageData     Stage = "DATA"
	StageDot      Stage = "end of data"
)

// Reply is a reply of the server that refused something.
type Reply struct {
	Code int
	Text string // lines joined by " / ", enhanced code included
	Host string // who said it
	// Enhanced is the reply's enhanced status code (RFC 3463), "" when
	// it gave none.
	Enhanced string
	Stage    Stage  // what it answered; "" for gw's own refusals
	Note     string // gw's remark on the circumstances, after the reply
	// Own marks gw's own refusal (5.6.3, 5.6.7, 5.3.4): no server said
	// it, and a DSN does not present it as a server's reply.
	Own bool
}

func (r *Reply) Error() string {
	msg := fmt.Sprintf("%d %s", r.Code, r.Text)
	if r.Host != "" {
		msg = r.Host + " said: " + msg
	}
	if r.Stage != "" {
		msg += " (in reply to " + string(r.Stage) + ")"
	}
	if r.Note != "" {
		msg += " (" + r.Note + ")"
	}
	if r.hostRefused() {
		// The text carries the status: the journal keeps the text.
		msg += " (#" + r.Status() + ")"
	}
	return msg
}

// hostRefused reports a 5xx greeting: the server refuses every message
// from anyone, which says something about that host, not about the
// message. It is a temporary failure, as with qmail and Postfix: the host
// may be overloaded or misconfigured for now, and mail is deferred until
// queuelifetime rather than bounced at once.
func (r *Reply) hostRefused() bool { return r.Stage == StageGreeting && r.Code >= 500 }

// Temporary reports a 4xx reply, or a 5xx greeting.
func (r *Reply) Temporary() bool { return r.Code < 500 || r.hostRefused() }

// Status is the enhanced status code for a DSN: the server's own, in the
// class of the failure, else X.3.2 (system not accepting network
// messages) for a refused greeting, else X.0.0.
func (r *Reply) Status() string {
	class := "5"
	if r.Temporary() {
		class = "4"
	}
	if _, rest, ok := strings.Cut(r.Enhanced, "."); ok {
		return class + "." + rest
	}
	if r.hostRefused() {
		return class + ".3.2"
	}
	return class + ".0.0"
}

// ValidCode reports whether code can be a server's refusal: 4yz or 5yz
// with y from 0 to 5 (RFC 5321 4.2.1). Anything else in answer to a
// command that wanted a 2yz or 3yz is a broken server, not a verdict on
// the message.
func ValidCode(code int) bool {
	return code >= 400 && code < 600 && code/10%10 <= 5
}

// Permanent reports whether err is a permanent refusal (a 5xx reply, or an
// error that says so through Temporary() bool). Anything else —
// network trouble, timeouts, unknown errors — is temporary.
func Permanent(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return !t.Temporary()
	}
	return false
}

// ConnError is a failure to reach or to talk to a server: the destination
// rather than the message is at fault.
type ConnError struct {
	Host  string
	Err   error
	Stage Stage
	// Enhanced is the status a DSN gives it; "" is 4.4.2 (bad
	// connection).
	Enhanced string
	Note     string // gw's remark on the circumstances, after the error
}

// Statuses of failures to talk to a server (RFC 3463).
const (
	StatusNoAnswer = "4.4.1" // the connection failed: refused, unreachable, timed out
	StatusBadConn  = "4.4.2" // the connection broke during the session
	StatusBadProto = "4.5.0" // the server broke the protocol (an invalid reply)
)

func (e *ConnError) Error() string {
	msg := e.Host + ": " + e.Err.Error()
	if e.Stage != "" && e.Stage != StageConnect {
		msg += " (during " + string(e.Stage) + ")"
	}
	if e.Note != "" {
		msg += " (" + e.Note + ")"
	}
	return msg + " (#" + e.Status() + ")"
}
func (e *ConnError) Unwrap() error { return e.Err }

// Status is the failure's enhanced status code.
func (e *ConnError) Status() string {
	if e.Enhanced != "" {
		return e.Enhanced
	}
	return StatusBadConn
}

// Temporary: a connection failure is always worth another try.
func (e *ConnError) Temporary() bool { return true }

// Timeout reports whether the failure was a timeout.
func (e *ConnError) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// oneLine flattens text for a log line or a DSN.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " / ")), " ")
}
