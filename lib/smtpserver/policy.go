package smtpserver

import (
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/emersion/go-sasl"

	"gw/lib/dsn"
	"gw/lib/mailbox"
	"gw/lib/tcpserver"
)

// Policy is everything a listener decides. The core runs the protocol
// (what is syntax, what is in sequence, what is a limit) and asks the
// policy at each step of the conversation; gw-smtpd and gw-scan's proxy
// are its two implementations, so the gateway has one reading of the
// protocol and one DATA path. The checks that come next (SPF at MAIL,
// DKIM, DMARC and ARC at the end of the message, milters at every step)
// hook in here: each method sees the whole Session, and a nil reply
// lets the step go on.
type Policy interface {
	// Connect is asked before the greeting. A reply refuses the client:
	// it is sent instead of the greeting and the session ends.
	Connect(s *Session) *Reply
	// Helo is told the HELO or EHLO name (s.Helo, s.EHLO). A reply
	// refuses it and the session stays unintroduced.
	Helo(s *Session) *Reply
	// Mail judges the sender. The core has checked the path's syntax and
	// the parameters (m.Size within the limit, m.UTF8, m.Body); the
	// policy parses m.Path into m.Addr. A reply refuses the sender.
	Mail(s *Session, m *Mail) *Reply
	// Rcpt judges a recipient; on acceptance it sets r.Stored, the
	// address to queue. A reply refuses it; refusals the policy gives do
	// not count as protocol errors (the policy keeps its own count).
	Rcpt(s *Session, r *Rcpt) *Reply
	// Data starts a message (DATA, or the first BDAT): it returns where
	// the message goes, in stored form (LF line ends, dots unstuffed), or
	// a reply that refuses it. The sink's writes must not fail the
	// message: the client's bytes are read to the end whatever happens.
	Data(s *Session) (io.Writer, *Reply)
	// DataEnd ends the message: the policy commits or abandons what it
	// wrote. When m.Refused is set, the core refuses the message with it
	// (too big, bare line ends, timeout, disconnect) and the policy must
	// abandon it; the reply it returns is then ignored. Otherwise its
	// reply is the message's: nil means the core's "250 2.0.0 ok".
	DataEnd(s *Session, m *Message) *Reply
	// Reset is told the transaction ended (RSET, HELO, STARTTLS, after
	// each message).
	Reset(s *Session)
	// Auth starts SMTP AUTH with mech, over TLS only: a SASL server, or
	// a reply that refuses. A SASL server's error that is a *Reply is
	// sent as it is (a 421 ends the session), any other error is a 535.
	// On success the policy has set s.AuthUser.
	Auth(s *Session, mech string) (sasl.Server, *Reply)
}

// Session is the conversation's context, as the policy sees it.
type Session struct {
	ID     string
	Client tcpserver.Client // the client's address, host name and the env of its tcprules rule
	Conn   net.Conn         // the connection as the listener handed it over
	Start  time.Time

	Helo     string               // the HELO/EHLO argument as the client wrote it; "" before one
	EHLO     bool                 //
	TLS      *tls.ConnectionState // nil: plaintext
	AuthUser string               // "" until AUTH succeeded

	Mail  *Mail   // the transaction's sender; nil outside a transaction
	Rcpts []*Rcpt // its accepted recipients
	Msgs  int     // messages accepted in the session

	c *conn
}

// Log writes one log line about the session (the session's id first).
func (s *Session) Log(severity, event string, kv ...any) {
	s.c.log(severity, event, kv...)
}

// TalksFirst reports whether the client sent anything before the
// greeting: within wait, or (wait 0) already by now, a look at the
// socket that does not wait (Postfix postscreen's PREGREET).
func (s *Session) TalksFirst(wait time.Duration) bool {
	return s.c.talksFirst(wait)
}

// Mail is MAIL FROM's path and parameters.
type Mail struct {
	Path string          // between the angle brackets, as the client wrote it
	Addr mailbox.Address // the policy's parse of Path
	Size int64           // SIZE=; 0 when not given
	Body string          // BODY=: "7BIT", "8BITMIME" or "" (not given)
	UTF8 bool            // SMTPUTF8 (RFC 6531): UTF-8 in addresses and header fields
	// Prepend collects header fields the policy's checks at MAIL and RCPT
	// add (Received-SPF and the like), each a whole field ending in LF;
	// the policy puts them on top of the message when it starts it.
	Prepend []string
	DSN     dsn.Mail // RFC 3461's RET and ENVID, checked (params.go)
	// RequireTLS is MAIL's REQUIRETLS (RFC 8689), given on a TLS session.
	RequireTLS bool
}

// Rcpt is RCPT TO's path and parameters.
type Rcpt struct {
	Path   string          // between the angle brackets, as the client wrote it
	Addr   mailbox.Address // the policy's parse of Path
	Stored string          // what the policy queues for it, once accepted
	DSN    dsn.Rcpt        // RFC 3461's NOTIFY and ORCPT, checked (params.go)
}

// Message is what DataEnd learns about the message the client sent.
type Message struct {
	Size    int64  // bytes in stored form
	Header  []byte // the header section in stored form, up to MaxHeader bytes
	Chunked bool   // it came by BDAT
	Refused *Reply // the core refuses it: the policy abandons it
	Reason  string // why, for the log
	// Prepend collects header fields the policy's end-of-message checks
	// add (Authentication-Results and the like), in order. A policy whose
	// sink is a spool puts them on top when it passes the message on; one
	// that streams to the injector must spool before it can use them.
	Prepend  []string
	complete bool // the header section ended within MaxHeader
}

// HeaderComplete reports whether Header holds the whole header section.
func (m *Message) HeaderComplete() bool { return m.complete }

// MaxHeader is how much of a message's header section the core keeps for
// DataEnd.
const MaxHeader = 64 << 10
