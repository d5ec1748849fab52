// Package tracehdr is the X-Gw-Trace header field: the link from one gw
// instance's queue to the next across a hop. gw-send puts the field on top
// of a message it hands over by QMTP, or by SMTP to a gw-smtpd that
// offered Keyword,
//
//	X-Gw-Trace: host=gw1.example.net qid=0669a1b2c3d4e
//
// and the listener that takes the message removes every such field from
// its header whoever sent it (Stripper), logging the link (prev=HOST/QID)
// only when the ACL marks the client as a gw peer. The field thus lives on
// the wire between two instances and never in a queue: no later hop, the
// Internet included, sees it, and no outsider can plant a trail.
//
// Why a field of its own and not the Received line: a Received line is
// the receiver's record (RFC 5321 4.4), it stays in the message for good
// and leaves with it, and anyone can write one; a field with gw's name can
// be taken off at the face that reads it and believed only from a peer.
package tracehdr

import (
	"bytes"
	"io"

	"gw/lib/queue"
)

// Name is the field's name; matching ignores case, as header names do.
const Name = "X-Gw-Trace"

// Keyword is the EHLO keyword gw-smtpd offers the clients the ACL marks
// as gw peers: a gw-send that sees it puts the field on the message, as
// it does on every QMTP hand-over. A server that does not offer it (the
// Internet, a mail store) never gets the field.
const Keyword = "XGWTRACE"

// MaxHost bounds the host part: a domain name's length (RFC 1035).
const MaxHost = 253

// MaxValue bounds what a Stripper keeps of a field's value; a valid one is
// far shorter ("host=" 253 " qid=" 13).
const MaxValue = 512

// Link names a message in the queue of the instance that handed it on.
type Link struct {
	Host string // that instance's me
	QID  string // the message's queue id there
}

// String is the link as the prev= log field carries it: HOST/QID.
func (l Link) String() string { return l.Host + "/" + l.QID }

// Field returns the header line that carries l, ending in LF as gw stores
// messages. l must be valid (the sender's own me and qid).
func Field(l Link) string {
	return Name + ": host=" + l.Host + " qid=" + l.QID + "\n"
}

// Parse reads a field's value as untrusted input: exactly "host=HOST
// qid=QID", folding whitespace aside, HOST a name of letters, digits, '.',
// '-' and '_' (or an address literal in brackets) of at most MaxHost bytes,
// QID a queue id. Anything else is not a link.
func Parse(value string) (Link, bool) {
	parts := bytes.Fields([]byte(value))
	if len(parts) != 2 {
		return Link{}, false
	}
	host, ok1 := bytes.CutPrefix(parts[0], []byte("host="))
	qid, ok2 := bytes.CutPrefix(parts[1], []byte("qid="))
	if !ok1 || !ok2 || !validHost(host) {
		return Link{}, false
	}
	if _, err := queue.ParseID(string(qid)); err != nil {
		return Link{}, false
	}
	return Link{Host: string(host), QID: string(qid)}, true
}

func validHost(h []byte) bool {
	if len(h) == 0 || len(h) > MaxHost {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte(".-_[]:"), c) >= 0) {
			return false
		}
	}
	return true
}

// maxName is as much of a line as Stripper holds back to learn the
// field's name: longer than any name it looks for, with room for the
// obsolete whitespace before the colon (RFC 5322 4.5.2).
const maxName = 64

// Stripper passes a message to Out with every X-Gw-Trace field (and its
// folded lines) taken out of the header, and keeps the first one's value.
// It holds back at most the start of a header line while it learns the
// line's field name; Flush passes on what is held at the message's end.
// Lines may end in LF or CRLF. The zero value, with Out set, is ready.
type Stripper struct {
	Out io.Writer

	body     bool   // past the empty line: everything passes
	decided  bool   // the current line is being passed or dropped
	dropping bool   // the current field is an X-Gw-Trace field
	start    []byte // the current line's start while undecided
	count    int    // X-Gw-Trace fields seen
	value    []byte // the first one's value, unfolded, up to MaxValue
}

// Write never fails on its own account; it returns Out's error.
func (s *Stripper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !s.body {
		var err error
		p, err = s.step(p)
		if err != nil {
			return n - len(p), err
		}
	}
	if len(p) > 0 {
		if _, err := s.Out.Write(p); err != nil {
			return n - len(p), err
		}
	}
	return n, nil
}

// step consumes the header bytes of p that can be dealt with at once and
// returns the rest.
func (s *Stripper) step(p []byte) ([]byte, error) {
	if s.decided {
		// to the end of the line, passed or dropped as decided
		i := bytes.IndexByte(p, '\n')
		end := len(p)
		if i >= 0 {
			end = i + 1
		}
		if s.dropping {
			s.keep(p[:end])
		} else if _, err := s.Out.Write(p[:end]); err != nil {
			return p, err
		}
		if i >= 0 {
			s.decided = false
		}
		return p[end:], nil
	}
	// undecided: gather the line's start a byte at a time
	c := p[0]
	s.start = append(s.start, c)
	p = p[1:]
	line := s.start
	switch {
	case c == '\n' && (len(line) == 1 || len(line) == 2 && line[0] == '\r'):
		s.body = true // the empty line ends the header
		return p, s.release(false)
	case line[0] == ' ' || line[0] == '\t':
		// a folded line goes with the field before it
		return p, s.release(s.dropping)
	case c == ':':
		name := bytes.TrimRight(line[:len(line)-1], " \t")
		drop := bytes.EqualFold(name, []byte(Name))
		if drop {
			s.count++
		}
		s.dropping = drop
		s.start = s.start[:0]
		if !drop {
			if _, err := s.Out.Write(line); err != nil {
				return p, err
			}
		}
		s.decided = true
		return p, nil
	case c == '\n' || len(line) >= maxName:
		// no field name here (a malformed line) or none gw looks for
		return p, s.release(false)
	}
	return p, nil
}

// release ends the undecided start: dropped, or passed on; the rest of
// the line follows the same way. A line that ended with the start leaves
// the next one undecided.
func (s *Stripper) release(drop bool) error {
	line := s.start
	s.start = s.start[:0]
	s.dropping = drop
	s.decided = line[len(line)-1] != '\n' && !s.body
	if drop {
		s.keep(line)
		return nil
	}
	_, err := s.Out.Write(line)
	return err
}

// keep adds dropped bytes of the first X-Gw-Trace field to its value.
func (s *Stripper) keep(b []byte) {
	if s.count != 1 {
		return
	}
	if room := MaxValue - len(s.value); len(b) > room {
		b = b[:max(room, 0)]
	}
	s.value = append(s.value, b...)
}

// Flush passes on a line start still held back: the message ended inside
// it, with no line end.
func (s *Stripper) Flush() error {
	if len(s.start) == 0 {
		return nil
	}
	return s.release(false)
}

// Seen returns how many X-Gw-Trace fields the header had.
func (s *Stripper) Seen() int { return s.count }

// Value returns the first X-Gw-Trace field's value, unfolded and trimmed
// (up to MaxValue bytes of it).
func (s *Stripper) Value() string {
	v := bytes.ReplaceAll(s.value, []byte("\r"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(bytes.TrimSpace(v))
}
