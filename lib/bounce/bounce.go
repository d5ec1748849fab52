// Package bounce writes delivery status notifications (RFC 3464): a
// multipart/report with a human-readable part, a message/delivery-status
// part with one group of fields for each recipient, and the original
// message's headers (text/rfc822-headers).
package bounce

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"gw/lib/mailbox"
)

// Recipient is one recipient's outcome for the report.
type Recipient struct {
	Address string
	// Action is RFC 3464's: "failed", "delayed", or for a success
	// notice (RFC 3461 NOTIFY=SUCCESS) "relayed" (the next hop takes no
	// DSN request) or "delivered" (the next hop is the final one, LMTP).
	Action    string
	Status    string // enhanced code, e.g. "5.1.1"
	RemoteMTA string // host name, when a server answered
	// DiagnosticType is the Diagnostic-Code's type (RFC 3464 2.3.6):
	// "smtp" for a server's reply, "x-gw" for gw's own reasons; "" leaves
	// the field out.
	DiagnosticType string
	Diagnostic     string // the server's reply or gw-send's own reason
	// Explanation is the line the human-readable part gives the
	// recipient; "" is Diagnostic, or the Action when that is "" too.
	Explanation string
	// WillRetryUntil is when a delayed recipient will be given up
	// (RFC 3464 2.3.9); zero leaves the field out.
	WillRetryUntil time.Time
	// OriginalRecipient is the client's ORCPT, "type;address" as
	// dsn.Rcpt.Field writes it; "" leaves Original-Recipient out.
	OriginalRecipient string
}

// Report is one DSN.
type Report struct {
	ReportingMTA string    // control/me
	From         string    // bouncefrom@bouncehost
	To           string    // the original sender (or the double-bounce address)
	QueueID      string    // the original message's queue id
	Arrival      time.Time // when the original was queued
	Date         time.Time
	Recipients   []Recipient
	Double       bool   // a bounce that bounced: the report goes to the postmaster
	Headers      []byte // the original message's header section
	// Full is the whole original message, returned instead of Headers
	// (message/rfc822) when the sender asked RET=FULL and it is no
	// larger than MaxFull; nil returns the headers.
	Full     []byte
	EnvID    string // the client's ENVID: Original-Envelope-Id; "" leaves it out
	Boundary string // MIME boundary; derived from QueueID when empty
}

// MaxFull is the largest original message a failure report returns whole
// (RET=FULL); a larger one has its headers returned, as RFC 3461 6.2
// allows.
const MaxFull = 256 << 10

// MaxHeaders bounds how much of the original's header section is attached.
const MaxHeaders = 64 << 10

// ReadHeaders returns the header section of a stored message (up to the
// first empty line), at most MaxHeaders bytes; the rest of r is left.
func ReadHeaders(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeaders))
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			out = append(out, line...)
			continue
		}
		if len(line) == 0 || string(line) == "\n" || string(line) == "\r\n" {
			return out, nil
		}
		out = append(out, line...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// Message returns the DSN with LF line ends, as messages are stored.
func (r *Report) Message() []byte {
	bd := r.Boundary
	if bd == "" {
		bd = "gw-dsn-" + r.QueueID
	}
	var b strings.Builder
	failed, delayed := false, false
	for _, rc := range r.Recipients {
		switch rc.Action {
		case "delayed":
			delayed = true
		case "failed":
			failed = true
		}
	}
	success := !failed && !delayed
	subject := "Delivery Status Notification (Failure)"
	switch {
	case success:
		subject = "Delivery Status Notification (Success)"
	case delayed && !failed:
		subject = "Delivery Status Notification (Delay)"
	}
	if r.Double {
		subject = "Double bounce: " + subject
	}
	fmt.Fprintf(&b, "From: Mail Delivery System <%s>\n", r.From)
	fmt.Fprintf(&b, "To: <%s>\n", clean(headerAddress(r.To)))
	fmt.Fprintf(&b, "Subject: %s\n", subject)
	fmt.Fprintf(&b, "Date: %s\n", r.Date.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d.dsn@%s>\n", r.QueueID, r.Date.UnixNano(), r.ReportingMTA)
	fmt.Fprintf(&b, "Auto-Submitted: auto-replied\n")
	fmt.Fprintf(&b, "MIME-Version: 1.0\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", bd)
	b.WriteString("\nThis is a MIME-encapsulated message.\n\n")

	fmt.Fprintf(&b, "--%s\nContent-Type: text/plain; charset=us-ascii\nContent-Description: Notification\n\n", bd)
	fmt.Fprintf(&b, "This is the mail system at %s.\n\n", clean(r.ReportingMTA))
	switch {
	case r.Double:
		b.WriteString("A delivery status notification could not be delivered to the\nsender of the original message. Its details follow.\n\n")
	case failed:
		b.WriteString("I'm sorry to have to tell you that your message could not be\ndelivered to one or more recipients. This is a permanent error;\nI've given up.\n\n")
	case success:
		b.WriteString("Your message was passed on as you asked to be told. The next\nmail server will send no notice of its own; what became of the\nmessage after it is not known here.\n\n")
	default:
		b.WriteString("Your message could not yet be delivered to one or more recipients.\nI will keep trying; you need not send it again.\n\n")
	}
	for _, rc := range r.Recipients {
		line := rc.Explanation
		if line == "" {
			line = rc.Diagnostic
		}
		if line == "" {
			line = rc.Action // a success notice has no diagnostic
		}
		fmt.Fprintf(&b, "<%s>: %s\n", clean(rc.Address), clean(line))
	}
	b.WriteString("\n")

	fmt.Fprintf(&b, "--%s\nContent-Type: message/delivery-status\nContent-Description: Delivery report\n\n", bd)
	if r.EnvID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\n", clean(r.EnvID))
	}
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\n", clean(r.ReportingMTA))
	fmt.Fprintf(&b, "X-Gw-Queue-ID: %s\n", r.QueueID)
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\n", r.Arrival.UTC().Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\n")
		if rc.OriginalRecipient != "" {
			fmt.Fprintf(&b, "Original-Recipient: %s\n", clean(rc.OriginalRecipient))
		}
		fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\n", clean(rc.Address))
		fmt.Fprintf(&b, "Action: %s\n", rc.Action)
		fmt.Fprintf(&b, "Status: %s\n", rc.Status)
		if rc.RemoteMTA != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\n", clean(rc.RemoteMTA))
		}
		if rc.DiagnosticType != "" {
			fmt.Fprintf(&b, "Diagnostic-Code: %s; %s\n", rc.DiagnosticType, clean(rc.Diagnostic))
		}
		if !rc.WillRetryUntil.IsZero() {
			fmt.Fprintf(&b, "Will-Retry-Until: %s\n", rc.WillRetryUntil.UTC().Format(time.RFC1123Z))
		}
	}
	b.WriteString("\n")

	returned, ctype, desc := r.Headers, "text/rfc822-headers", "Undelivered message headers"
	if r.Full != nil {
		returned, ctype, desc = r.Full, "message/rfc822", "Undelivered message"
	}
	if success {
		desc = "Headers of the message"
	}
	fmt.Fprintf(&b, "--%s\nContent-Type: %s\nContent-Description: %s\n\n", bd, ctype, desc)
	h := strings.ReplaceAll(string(returned), "\r\n", "\n")
	h = strings.ReplaceAll(h, "--"+bd, "- -"+bd)
	b.WriteString(h)
	if !strings.HasSuffix(h, "\n") {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n--%s--\n", bd)
	return []byte(b.String())
}

// headerAddress is addr as the To: field shows it: quoted as its path is
// (mailbox.Path), so that a local part holding '>' or blanks stays one
// address; as stored when no path can carry it.
func headerAddress(addr string) string {
	if p, err := mailbox.Path(addr); err == nil {
		return p
	}
	return addr
}

// clean keeps a field to one printable ASCII line: peers choose these
// bytes, and a DSN field must not grow a second line.
func clean(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > 900 {
		b = append(b[:900], "..."...)
	}
	return string(b)
}
