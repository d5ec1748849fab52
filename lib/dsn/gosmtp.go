package dsn

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// go-smtp carries the parameters in its own types: its client writes
// them to a server that offers DSN (and only then), its server hands
// them decoded to gw-scan's proxy. These convert, checking what comes
// from go-smtp's server as a client's parameters are checked.

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

// FromMailOptions reads the DSN parameters go-smtp's server parsed, with
// this package's checks (ENVID's length, which go-smtp does not bound).
func FromMailOptions(opts *smtp.MailOptions) (Mail, error) {
	var m Mail
	if opts == nil {
		return m, nil
	}
	if opts.Return != "" {
		if _, err := m.Param("RET", string(opts.Return), true); err != nil {
			return Mail{}, err
		}
	}
	if opts.EnvelopeID != "" {
		if _, err := m.Param("ENVID", EncodeXtext(opts.EnvelopeID), true); err != nil {
			return Mail{}, err
		}
	}
	return m, nil
}

// FromRcptOptions reads the DSN parameters go-smtp's server parsed.
func FromRcptOptions(opts *smtp.RcptOptions) (Rcpt, error) {
	var r Rcpt
	if opts == nil {
		return r, nil
	}
	if len(opts.Notify) > 0 {
		words := make([]string, len(opts.Notify))
		for i, n := range opts.Notify {
			words[i] = string(n)
		}
		if _, err := r.Param("NOTIFY", strings.Join(words, ","), true); err != nil {
			return Rcpt{}, err
		}
	}
	if opts.OriginalRecipient != "" {
		v := string(opts.OriginalRecipientType) + ";" + EncodeXtext(opts.OriginalRecipient)
		if _, err := r.Param("ORCPT", v, true); err != nil {
			return Rcpt{}, err
		}
	}
	return r, nil
}
