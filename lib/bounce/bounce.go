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
	Address   string
	Action    string // "failed" or "delayed"
	Status    string // enhanced code, e.g. "5.1.1"
	RemoteMTA string // host name, when a server answered
	// DiagnosticType is the Diagnostic-Code's type (RFC 3464 2.3.6):
	// "smtp" for a server's reply, "x-gw" for gw's own reasons; "" leaves
	// the field out.
	DiagnosticType string
	Diagnostic     string // the server's reply or gw-send's own reason
	// Explanation is the line the human-readable part gives the
	// recipient; "" is Diagnostic.
	Explanation string
	// WillRetryUntil is when a delayed recipient will be given up
	// (RFC 3464 2.3.9); zero leaves the field out.
	WillRetryUntil time.Time
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
	Boundary     string // MIME boundary; derived from QueueID when empty
}

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
		if rc.Action == "delayed" {
			delayed = true
		} else {
			failed = true
		}
	}
	subject := "Delivery Status Notification (Failure)"
	if delayed && !failed {
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
	default:
		b.WriteString("Your message could not yet be delivered to one or more recipients.\nI will keep trying; you need not send it again.\n\n")
	}
	for _, rc := range r.Recipients {
		line := rc.Explanation
		if line == "" {
			line = rc.Diagnostic
		}
		fmt.Fprintf(&b, "<%s>: %s\n", clean(rc.Address), clean(line))
	}
	b.WriteString("\n")

	fmt.Fprintf(&b, "--%s\nContent-Type: message/delivery-status\nContent-Description: Delivery report\n\n", bd)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\n", clean(r.ReportingMTA))
	fmt.Fprintf(&b, "X-Gw-Queue-ID: %s\n", r.QueueID)
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\n", r.Arrival.UTC().Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\n")
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

	fmt.Fprintf(&b, "--%s\nContent-Type: text/rfc822-headers\nContent-Description: Undelivered message headers\n\n", bd)
	h := strings.ReplaceAll(string(r.Headers), "\r\n", "\n")
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
