// Package envelope is the qmail-queue envelope: its wire form on fd 1,
// 'F' sender NUL ('T' recipient NUL)* NUL, and the checks every address
// passes before gw queues it (mailbox.Check, the one definition).
//
// The stored form, kept in the queue, is the same bytes without the final
// extra NUL: that NUL is how a caller says the envelope is complete, and an
// envelope cut before it is refused whole (qmail_fail's way to abort).
//
// gw extends the envelope with items of its own, which only gw's
// injectors write and a stock qmail-queue client never does (gw-queue.8,
// "Extended envelope", is their definition; version 1 of the extension):
//
//	D <MAIL's DSN parameters>   right after the F item, at most once
//	N <RCPT's DSN parameters>   right after the T item it belongs to, at most once
//	R                           REQUIRETLS (RFC 8689) on MAIL: right after F, or
//	                            after D where there is one, at most once, empty
//
// The parameters are written as lib/dsn writes them (xtext, single
// spaces: printable ASCII, no NUL) and read back with its parsers. A new
// kind of item gets a new letter, and the meaning of these never changes:
// a reader that meets a letter it does not know refuses the envelope
// (91, as qmail-queue does) rather than drop what it says.
package envelope

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"gw/lib/dsn"
	"gw/lib/mailbox"
)

// Limits on what an envelope may hold. qmail-queue's only limit is the
// address length; the others bound memory against a hostile caller.
const (
	MaxAddress    = 1002  // bytes in one address (qmail-queue's limit)
	MaxDomain     = 255   // bytes after the last '@' (RFC 5321 4.5.3.1.2)
	MaxRecipients = 10000 // recipients in one envelope
)

// MaxStored bounds the stored form: every item (an address, or DSN
// parameters, which are shorter) is at most MaxAddress bytes after its
// letter, and there are at most two for the sender and two a recipient.
const MaxStored = (2*MaxRecipients + 2) * (MaxAddress + 2)

// Envelope is a sender and its recipients. The null sender is "".
type Envelope struct {
	Sender     string
	Recipients []string
	// DSN is the MAIL command's DSN parameters (RET, ENVID); zero when
	// the client gave none.
	DSN dsn.Mail
	// RcptDSN is each recipient's DSN parameters (NOTIFY, ORCPT), by
	// index into Recipients; it may be shorter (nil when no recipient
	// has any): the rest have none. Use Add and RcptDSNOf.
	RcptDSN []dsn.Rcpt
	// RequireTLS is MAIL's REQUIRETLS (RFC 8689): every hop must be TLS
	// with an authenticated peer that takes REQUIRETLS, or the message
	// fails with 5.7.10. A flag of its own, not a DSN parameter.
	RequireTLS bool
}

// Add appends a recipient with its DSN parameters, keeping RcptDSN in
// step with Recipients.
func (e *Envelope) Add(rcpt string, d dsn.Rcpt) {
	if !d.IsZero() {
		for len(e.RcptDSN) < len(e.Recipients) {
			e.RcptDSN = append(e.RcptDSN, dsn.Rcpt{})
		}
		e.RcptDSN = append(e.RcptDSN, d)
	}
	e.Recipients = append(e.Recipients, rcpt)
}

// RcptDSNOf returns recipient i's DSN parameters (zero when none).
func (e Envelope) RcptDSNOf(i int) dsn.Rcpt {
	if i < len(e.RcptDSN) {
		return e.RcptDSN[i]
	}
	return dsn.Rcpt{}
}

// Error is an envelope refusal; Code is the qmail-queue exit code it maps to.
type Error struct {
	Code int
	What string
}

func (e *Error) Error() string { return e.What }

// Exit codes of qmail-queue(8) that envelope problems map to.
const (
	codeAddressTooLong = 11
	codeBadAddress     = 12 // gw's own, permanent as 11 to 40 are (qq.BadAddress)
	codeReadError      = 54
	codeBadEnvelope    = 91
)

var errTruncated = &Error{codeReadError, "envelope ends before its final NUL"}

// Read reads one wire-form envelope from r, through its final NUL, and
// checks every address (CheckAddress). Nothing after the final NUL is read.
// An *Error says which qmail-queue code the problem maps to; other errors
// are read errors.
func Read(r io.ByteReader) (Envelope, error) {
	return read(r, CheckAddress)
}

// read is Read with the address check as a parameter: the queue reads
// back what it stored with a lighter one (see ParseStored).
func read(r io.ByteReader, check func(string) error) (Envelope, error) {
	var env Envelope
	first, err := readItem(r)
	if err != nil {
		return env, err
	}
	if len(first) == 0 || first[0] != 'F' {
		return env, &Error{codeBadEnvelope, "envelope does not begin with F"}
	}
	env.Sender = string(first[1:])
	if err := check(env.Sender); err != nil {
		return env, err
	}
	prev := byte('F') // the kind of the item before: where D and N may stand
	for {
		item, err := readItem(r)
		if err != nil {
			return env, err
		}
		if len(item) == 0 {
			return env, nil
		}
		if item[0] == 'D' || item[0] == 'N' || item[0] == 'R' {
			if err := env.extension(item, prev); err != nil {
				return env, err
			}
			prev = item[0]
			continue
		}
		prev = item[0]
		if item[0] != 'T' {
			return env, &Error{codeBadEnvelope, fmt.Sprintf("envelope item %d does not begin with T", len(env.Recipients)+1)}
		}
		if len(env.Recipients) == MaxRecipients {
			return env, &Error{codeBadEnvelope, fmt.Sprintf("more than %d recipients", MaxRecipients)}
		}
		rcpt := string(item[1:])
		if err := check(rcpt); err != nil {
			return env, err
		}
		if rcpt == "" {
			// The null path is a sender's alone: no RCPT can name it.
			return env, &Error{codeBadAddress, fmt.Sprintf("recipient %d is empty", len(env.Recipients)+1)}
		}
		env.Recipients = append(env.Recipients, rcpt)
	}
}

// extension reads a D, N or R item (see the package comment), which must
// follow an F or a T item directly. Its parameters pass lib/dsn's checks
// as a client's would: what another program wrote is not trusted more.
func (e *Envelope) extension(item []byte, prev byte) error {
	switch {
	case item[0] == 'D' && prev == 'F':
		d, err := dsn.ParseMail(string(item[1:]))
		if err != nil {
			return &Error{codeBadEnvelope, fmt.Sprintf("sender's DSN item: %v", err)}
		}
		e.DSN = d
	case item[0] == 'R' && (prev == 'F' || prev == 'D'):
		if len(item) != 1 {
			return &Error{codeBadEnvelope, "REQUIRETLS item holds a value"}
		}
		e.RequireTLS = true
	case item[0] == 'N' && prev == 'T':
		d, err := dsn.ParseRcpt(string(item[1:]))
		if err != nil {
			return &Error{codeBadEnvelope, fmt.Sprintf("recipient %d's DSN item: %v", len(e.Recipients), err)}
		}
		for len(e.RcptDSN) < len(e.Recipients)-1 {
			e.RcptDSN = append(e.RcptDSN, dsn.Rcpt{})
		}
		e.RcptDSN = append(e.RcptDSN, d)
	default:
		return &Error{codeBadEnvelope, fmt.Sprintf("envelope item %c out of place", item[0])}
	}
	return nil
}

// readItem reads up to and including a NUL and returns what came before it.
// An item longer than an address can be is refused as soon as it is seen.
func readItem(r io.ByteReader) ([]byte, error) {
	var item []byte
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			return nil, errTruncated
		}
		if err != nil {
			return nil, err
		}
		if c == 0 {
			return item, nil
		}
		if len(item) > MaxAddress { // the F or T byte is not part of the address
			return nil, &Error{codeAddressTooLong, fmt.Sprintf("address longer than %d bytes", MaxAddress)}
		}
		item = append(item, c)
	}
}

// CheckAddress refuses an address gw will not queue: over-long, over-long
// domain, or one mailbox.Check refuses (a control character, or no way to
// write it as an SMTP path: a '>' or a blank in its domain would end the
// path early at the next hop and make the rest ESMTP parameters). Every
// refusal is permanent: the same address will never pass.
func CheckAddress(a string) error {
	if err := checkLength(a); err != nil {
		return err
	}
	if err := mailbox.Check(a); err != nil {
		return &Error{codeBadAddress, fmt.Sprintf("address %q: %v", a, err)}
	}
	return nil
}

// checkStored is the check an address in the queue passes to be read
// back: over-long, CR, LF or NUL make the envelope unreadable. An address
// stored before CheckAddress grew stricter, or by a program that did not
// check, still reads: gw-send fails that recipient alone (mailbox.Path).
func checkStored(a string) error {
	if err := checkLength(a); err != nil {
		return err
	}
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case '\r', '\n':
			return &Error{codeBadEnvelope, "address holds CR or LF"}
		case 0:
			return &Error{codeBadEnvelope, "address holds NUL"}
		}
	}
	return nil
}

// checkLength refuses an address or a domain longer than gw keeps.
func checkLength(a string) error {
	if len(a) > MaxAddress {
		return &Error{codeAddressTooLong, fmt.Sprintf("address longer than %d bytes", MaxAddress)}
	}
	if at := bytes.LastIndexByte([]byte(a), '@'); at >= 0 && len(a)-at-1 > MaxDomain {
		return &Error{codeAddressTooLong, fmt.Sprintf("domain longer than %d bytes", MaxDomain)}
	}
	return nil
}

// Stored returns the stored form: the wire form without its final NUL.
// DSN items are written only where there are parameters, so an
// envelope without any is qmail-queue's, byte for byte.
func (e Envelope) Stored() []byte {
	n := len(e.Sender) + 2
	for _, r := range e.Recipients {
		n += len(r) + 2
	}
	b := make([]byte, 0, n+1)
	b = item(b, 'F', e.Sender)
	if !e.DSN.IsZero() {
		b = item(b, 'D', e.DSN.String())
	}
	if e.RequireTLS {
		b = item(b, 'R', "")
	}
	for i, r := range e.Recipients {
		b = item(b, 'T', r)
		if d := e.RcptDSNOf(i); !d.IsZero() {
			b = item(b, 'N', d.String())
		}
	}
	return b
}

func item(b []byte, kind byte, v string) []byte {
	b = append(b, kind)
	b = append(b, v...)
	return append(b, 0)
}

// WithoutDSN returns e without its DSN parameters or REQUIRETLS:
// qmail-queue's envelope alone, for a program that is not gw's own.
func (e Envelope) WithoutDSN() Envelope {
	e.DSN, e.RcptDSN, e.RequireTLS = dsn.Mail{}, nil, false
	return e
}

// Wire returns the form a caller writes on fd 1, final NUL included.
func (e Envelope) Wire() []byte { return append(e.Stored(), 0) }

// ParseStored parses a stored-form envelope, as kept in the queue.
func ParseStored(b []byte) (Envelope, error) {
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(b), bytes.NewReader([]byte{0})))
	env, err := read(r, checkStored)
	if err != nil {
		return env, err
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return env, errors.New("bytes after the stored envelope")
	}
	return env, nil
}
