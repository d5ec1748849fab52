package dsn

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// go-smtp's client carries the parameters in its own types, and writes
// them to a server that offers DSN (and only then): gw-send's SMTP
// transport and gw-scan's proxy give them to it through these.

// MailOptions sets m in opts for go-smtp's client.
func (m Mail) MailOptions(opts *smtp.MailOptions) {
	opts.Return = smtp.DSNReturn(m.Ret.String())
	opts.EnvelopeID = m.EnvID
}

// RcptOptions returns r as go-smtp's client takes it; nil when r is
// zero. ORCPT goes only with the types that client can write (rfc822,
// utf-8): another is left out rather than the recipient refused.
func (r Rcpt) RcptOptions() *smtp.RcptOptions {
	if r.IsZero() {
		return nil
	}
	opts := &smtp.RcptOptions{}
	for _, nw := range notifyWords {
		if r.Notify&nw.bit != 0 {
			opts.Notify = append(opts.Notify, smtp.DSNNotify(nw.word))
		}
	}
	switch {
	case strings.EqualFold(r.ORcptType, "rfc822"):
		opts.OriginalRecipientType, opts.OriginalRecipient = smtp.DSNAddressTypeRFC822, r.ORcpt
	case strings.EqualFold(r.ORcptType, "utf-8"):
		opts.OriginalRecipientType, opts.OriginalRecipient = smtp.DSNAddressTypeUTF8, r.ORcpt
	}
	if len(opts.Notify) == 0 && opts.OriginalRecipient == "" {
		return nil
	}
	return opts
}
