// Package deliver is gw-send's transport side: sessions with a remote
// mail server that carry messages in two phases (start a transaction, add
// recipients one by one, send the body, then commit or abort), with a
// per-recipient outcome.
//
// SMTP and LMTP go through go-smtp's client (smtp.Client), over a
// connection gw dials itself. gw adds what that client lacks (see
// specs/go-smtp.md): a deadline on every read and write, the body's
// included (deadlineConn); a lone CR sent as a space (lineEnds);
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
)

// Session is one connection to a mail server, able to carry several
// messages one after the other.
type Session interface {
	// Start begins a transaction for a message from sender (null sender
	// "") of size bytes.
	Start(sender string, size int64, utf8 bool) (Delivery, error)
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
	// AddRcpt offers a recipient; an error refuses that recipient only.
	AddRcpt(to string) error
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

// Reply is a reply of the server that refused something.
type Reply struct {
	Code int
	Text string // lines joined by " / ", enhanced code included
	Host string // who said it
}

func (r *Reply) Error() string {
	if r.Host != "" {
		return fmt.Sprintf("%s said: %d %s", r.Host, r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r.Code < 500 }

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
	Host string
	Err  error
}

func (e *ConnError) Error() string { return e.Host + ": " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

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
