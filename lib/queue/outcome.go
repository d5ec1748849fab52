package queue

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Source says who decided a delivery outcome. The values are stored in
// the journal: never renumber them.
type Source uint8

// Outcome sources.
const (
	// FromText is an outcome an older gw stored as text only (an 'R'
	// record): its Text is the whole line and Status what it ended with.
	FromText Source = 0
	// FromReply is a remote server's reply (SMTP or LMTP), in Code and Text.
	FromReply Source = 1
	// FromConn is a failure without a reply: the connection could not
	// be made, broke, timed out, or the server spoke no valid protocol.
	FromConn Source = 2
	// FromGW is gw's own verdict: routing, loops, 8-bit or UTF-8 mail a
	// hop cannot take, a damaged queue file, queuelifetime, the admin.
	FromGW Source = 3
	// FromQMTP is a QMTP server's response; QMTP has no reply codes, so
	// Code is 554 or 451 as its "D" or "Z" maps to.
	FromQMTP Source = 4
	sourceCount
)

// Outcome is what became of one delivery attempt to one recipient, kept as
// data from the wire to the journal; the DSN, the log and gw-qstat render
// it (String is the one line the last two show).
type Outcome struct {
	Source Source
	Code   int    // the reply code; 0 without a reply
	Status string // the enhanced status code (RFC 3463) in the failure's class
	Text   string // the reply's text (its own enhanced code first, as sent), or gw's reason
	Host   string // the server's name
	Addr   string // its address and port
	// Stage is the step of the session the outcome comes from, named as
	// the command the server answered ("connect", "greeting", "MAIL
	// FROM", "RCPT TO", "DATA", "end of data", "STARTTLS").
	Stage   string
	DotSent bool   // the final dot went out before this outcome
	Note    string // gw's remark on the circumstances (TLS fallback, lifetime...)
}

// String is the outcome on one line, for the log and gw-qstat.
func (o Outcome) String() string {
	if o.Source == FromText {
		return o.Text
	}
	var b strings.Builder
	if o.Host != "" || o.Addr != "" {
		b.WriteString(o.Host)
		if ap, err := netip.ParseAddrPort(o.Addr); err == nil {
			b.WriteString("[" + ap.Addr().String() + "]:" + strconv.Itoa(int(ap.Port())))
		} else if o.Addr != "" {
			b.WriteString("[" + o.Addr + "]")
		}
		if o.Source == FromReply || o.Source == FromQMTP {
			b.WriteString(" said: ")
		} else {
			b.WriteString(": ")
		}
	}
	if o.Code != 0 {
		b.WriteString(strconv.Itoa(o.Code) + " ")
	}
	b.WriteString(o.Text)
	if o.Stage != "" && o.Stage != "connect" {
		if o.Source == FromReply {
			b.WriteString(" (in reply to " + o.Stage + ")")
		} else {
			b.WriteString(" (during " + o.Stage + ")")
		}
	}
	if o.Note != "" {
		b.WriteString(" (" + o.Note + ")")
	}
	if o.Status != "" {
		b.WriteString(" (#" + o.Status + ")")
	}
	return b.String()
}

// Temporary reports an outcome in class 4.
func (o Outcome) Temporary() bool { return strings.HasPrefix(o.Status, "4.") }

// TextOutcome is the outcome an older gw stored as text: the status is
// the "(#X.Y.Z)" gw ended such a line with, in the class of state.
func TextOutcome(text string, state State) Outcome {
	o := Outcome{Source: FromText, Text: text}
	class := "4"
	if state == Failed {
		class = "5"
	}
	if i := strings.LastIndex(text, "(#"); i >= 0 && strings.HasSuffix(text, ")") {
		st := text[i+2 : len(text)-1]
		if validStatus(st) && st[:1] == class {
			o.Status = st
		}
	}
	if o.Status == "" && text != "" {
		o.Status = class + ".0.0"
	}
	return o
}

// validStatus reports "X.Y.Z" with X 2, 4 or 5 and Y, Z of 1 to 3 digits.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// The outcome block of an 'O' journal record (journal.go):
//
//	ver:u8 source:u8 code:u16 flags:u8 (len:u16 bytes){status text host addr stage note}
//
// ver is outcomeVersion; a later version appends fields, which this
// reader skips. flags bit 0 is DotSent.
const (
	outcomeVersion = 1
	maxOutcomeText = maxErrorText // text
	maxOutcomeWord = 255          // every other string
	outcomeFixed   = 5
	maxOutcome     = outcomeFixed + 6*2 + maxOutcomeText + 5*maxOutcomeWord
)

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (o Outcome) encode(b []byte) []byte {
	b = append(b, outcomeVersion, byte(o.Source))
	b = binary.BigEndian.AppendUint16(b, uint16(o.Code))
	var flags byte
	if o.DotSent {
		flags |= 1
	}
	b = append(b, flags)
	for i, s := range []string{o.Status, o.Text, o.Host, o.Addr, o.Stage, o.Note} {
		n := maxOutcomeWord
		if i == 1 {
			n = maxOutcomeText
		}
		s = clip(s, n)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeOutcome(p []byte) (Outcome, error) {
	var o Outcome
	if len(p) < outcomeFixed {
		return o, errors.New("short outcome")
	}
	if p[0] < outcomeVersion {
		return o, errors.New("bad outcome version")
	}
	o.Source = Source(p[1])
	if o.Source >= sourceCount {
		return o, errors.New("unknown outcome source")
	}
	o.Code = int(binary.BigEndian.Uint16(p[2:]))
	o.DotSent = p[4]&1 != 0
	p = p[outcomeFixed:]
	for i, s := range []*string{&o.Status, &o.Text, &o.Host, &o.Addr, &o.Stage, &o.Note} {
		if len(p) < 2 {
			return o, errors.New("short outcome")
		}
		n := int(binary.BigEndian.Uint16(p))
		if n > maxOutcomeWord && i != 1 || n > maxOutcomeText {
			return o, errors.New("outcome field too long")
		}
		if len(p) < 2+n {
			return o, errors.New("short outcome")
		}
		*s, p = string(p[2:2+n]), p[2+n:]
	}
	return o, nil
}

// LastError is the recipient's last outcome on one line, "" when none.
func (rc Recipient) LastError() string { return rc.Outcome.String() }
