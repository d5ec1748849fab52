// Package msgid picks a message's Message-ID out of its header as the
// message streams past, so that the acceptance log line can name the
// message as its author did without the body being read twice.
package msgid

import "bytes"

// MaxLen bounds what is kept of a field and logged of an id: RFC 5322
// lines are at most 998 characters; an id longer than a log can carry is
// cut, not allowed to grow the log line without end.
const MaxLen = 250

const maxField = 998 // a field is read no further than one line's length

// Finder is an io.Writer that sees the message from its first byte and
// keeps the first Message-ID field's value, unfolded. It stops looking
// at the empty line that ends the header.
type Finder struct {
	done    bool   // past the header
	line    []byte // the line being read, up to maxField bytes
	inField bool   // the field being read (with its folded lines) is Message-ID
	found   bool   // a Message-ID field has been read whole
	value   []byte
}

// Write never fails.
func (f *Finder) Write(p []byte) (int, error) {
	for _, b := range p {
		if f.done {
			break
		}
		if b != '\n' {
			if len(f.line) < maxField {
				f.line = append(f.line, b)
			}
			continue
		}
		f.endLine(bytes.TrimSuffix(f.line, []byte{'\r'}))
		f.line = f.line[:0]
	}
	return len(p), nil
}

// endLine takes one whole header line.
func (f *Finder) endLine(l []byte) {
	if len(l) == 0 {
		f.done = true
		f.closeField()
		return
	}
	if l[0] == ' ' || l[0] == '\t' {
		// a folded line continues the field before it
		if f.inField && len(f.value) < maxField {
			f.value = append(f.value, ' ')
			f.value = append(f.value, l...)
		}
		return
	}
	f.closeField()
	if !f.found && len(l) >= len("message-id:") && bytes.EqualFold(l[:len("message-id:")], []byte("message-id:")) {
		f.inField = true
		f.value = append(f.value[:0], l[len("message-id:"):]...)
	}
}

func (f *Finder) closeField() {
	if f.inField {
		f.inField, f.found = false, true
	}
}

// ID returns the Message-ID, "<left@right>" as written (or the field's
// text when it has no angle brackets), with anything unprintable or
// blank made '?' so that it stays one token on a log line; "" when the
// header has none.
func (f *Finder) ID() string {
	if !f.found && !f.inField {
		return ""
	}
	v := bytes.TrimSpace(f.value)
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j >= 0 {
			v = v[i : i+j+1]
		}
	}
	if len(v) > MaxLen {
		v = v[:MaxLen]
	}
	out := make([]byte, len(v))
	for i, b := range v {
		if b <= ' ' || b >= 0x7f || b == '"' || b == '\\' {
			b = '?'
		}
		out[i] = b
	}
	return string(out)
}
