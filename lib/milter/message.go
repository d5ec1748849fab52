package milter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// field is one header field as stored: its name and everything after the
// colon, continuation lines joined by LF, without the final line end.
type field struct {
	name, value string
}

// message is a stored message (LF line ends) split for the milters: the
// header fields in order, and the body after the blank line.
type message struct {
	fields []field
	body   []byte
	noSep  bool // the message had no blank line (header only)
}

// split parses a stored message. A line that is neither a field nor a
// continuation ends the header (as a body's first line), so any byte
// string splits; nothing is refused here, the message was accepted.
func split(b []byte) message {
	var m message
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte("\n"))
		if len(line) == 0 {
			m.body = rest
			return m
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.fields) > 0 && found {
			f := &m.fields[len(m.fields)-1]
			f.value += "\n" + string(line)
			b = rest
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validFieldName(string(name)) || !found {
			m.body, m.noSep = b, true
			return m
		}
		m.fields = append(m.fields, field{string(name), string(value)})
		b = rest
	}
	m.noSep = true
	return m
}

// bytes joins the message back into stored form.
func (m *message) bytes() []byte {
	var b bytes.Buffer
	for _, f := range m.fields {
		b.WriteString(f.name)
		b.WriteByte(':')
		b.WriteString(f.value)
		b.WriteByte('\n')
	}
	if !m.noSep {
		b.WriteByte('\n')
	}
	b.Write(m.body)
	return b.Bytes()
}

// crlf turns stored LF line ends into the wire's CRLF, which milters
// expect in the body (a DKIM body hash is computed over CRLF).
func crlf(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// stored turns a milter's CRLF back into stored form; a bare CR is kept
// as it is (the core refuses bare CRs from clients, but a milter's body
// is the milter's).
func stored(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

func validFieldName(s string) bool {
	if s == "" || len(s) > 997 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

var errBadField = errors.New("milter sent a malformed header field")

// fieldValue checks a value a milter asks to add or change and returns
// it in stored form: continuation lines must start with white space, no
// NUL or bare CR, so a milter cannot start a new field or end the header
// by way of a value. lead says whether the milter gives the leading space
// itself (it negotiated SMFIP_HDR_LEADSPC); otherwise one is added.
func fieldValue(name, value string, lead bool) (string, error) {
	if !validFieldName(name) {
		return "", fmt.Errorf("%w: name %q", errBadField, name)
	}
	v := strings.ReplaceAll(value, "\r\n", "\n")
	if strings.ContainsAny(v, "\r\x00") {
		return "", fmt.Errorf("%w: %s: CR or NUL in the value", errBadField, name)
	}
	lines := strings.Split(v, "\n")
	for _, l := range lines[1:] {
		if l == "" || (l[0] != ' ' && l[0] != '\t') {
			return "", fmt.Errorf("%w: %s: a continuation line without leading white space", errBadField, name)
		}
	}
	if !lead && v != "" {
		v = " " + v
	}
	return v, nil
}

// change applies SMFIR_CHGHEADER: the index-th field of that name
// (1-based, names compared without case) gets the value; an empty value
// deletes it. A field that is not there is added, as Sendmail does.
func (m *message) change(index int, name, value string) {
	n := 0
	for i, f := range m.fields {
		if !strings.EqualFold(f.name, name) {
			continue
		}
		if n++; n == index {
			if value == "" {
				m.fields = append(m.fields[:i], m.fields[i+1:]...)
			} else {
				m.fields[i].value = value
			}
			return
		}
	}
	if value != "" {
		m.fields = append(m.fields, field{name, value})
	}
}

// insert applies SMFIR_INSHEADER: the field goes after the index-th
// field overall; 0 is the top, past the end is the bottom.
func (m *message) insert(index int, name, value string) {
	if index < 0 {
		index = 0
	}
	if index > len(m.fields) {
		index = len(m.fields)
	}
	m.fields = append(m.fields[:index], append([]field{{name, value}}, m.fields[index:]...)...)
}
