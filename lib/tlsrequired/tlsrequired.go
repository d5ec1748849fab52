// Package tlsrequired reads RFC 8689's TLS-Required header field: a
// message whose header section says "TLS-Required: No" asks that the
// recipient's published TLS policies (MTA-STS, DANE) not stop its
// delivery. The header section is the sender's, and so is the only
// message a false one can weaken: no check beyond its syntax is owed.
package tlsrequired

import (
	"bytes"
)

// fieldName is the field's name, compared without regard to case as
// every header field name is (RFC 5322 1.2.2).
const fieldName = "tls-required"

// No reports whether header, a message's header section (up to the
// empty line, LF or CRLF line ends), holds a TLS-Required field whose
// value is "No" (RFC 8689 5: the only value defined; ABNF literals match
// without regard to case). Folding and blanks around the value are
// allowed; any other value, or a field with bytes after "No", is not the
// field RFC 8689 defines and asks for nothing. One such field is enough.
func No(header []byte) bool {
	for _, f := range fields(header) {
		name, value, ok := bytes.Cut(f, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte(fieldName)) {
			continue
		}
		if bytes.EqualFold(bytes.Trim(value, " \t\r\n"), []byte("No")) {
			return true
		}
	}
	return false
}

// fields splits a header section into unfolded fields: a line that
// begins with a blank continues the field before it. It stops at the
// first empty line, the end of the header section.
func fields(header []byte) [][]byte {
	var out [][]byte
	for len(header) > 0 {
		line, rest, _ := bytes.Cut(header, []byte("\n"))
		header = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			last := out[len(out)-1]
			out[len(out)-1] = append(append(last[:len(last):len(last)], ' '), line...)
			continue
		}
		out = append(out, line)
	}
	return out
}
