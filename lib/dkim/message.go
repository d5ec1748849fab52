// Package dkim signs and verifies DKIM signatures (RFC 6376; Ed25519 by
// RFC 8463; RSA-SHA256 of at least 1024 bits by RFC 8301) for gw.
//
// The signature algorithm itself is github.com/emersion/go-msgauth/dkim's;
// this package adds what a gateway needs around it: gw's resolver, limits
// on the number of signatures and the size of keys a message can make it
// work on, per-domain keys in control/dkim/DOMAIN/SELECTOR.key, and the
// primitives (header fields, tag lists, canonicalisation, key records)
// that lib/arc builds ARC on, since no Go library does ARC.
package dkim

import (
	"bytes"
	"errors"
	"strings"
)

// ToCRLF returns msg with every line ending CRLF. gw's queue keeps
// messages with LF endings (qmail's convention); DKIM hashes CRLF lines,
// and a signature made on one form must verify on the other.
func ToCRLF(msg []byte) []byte {
	if !bytes.Contains(msg, []byte("\n")) {
		return msg
	}
	out := make([]byte, 0, len(msg)+len(msg)/40)
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			out = append(out, msg...)
			break
		}
		line := msg[:i]
		line = bytes.TrimSuffix(line, []byte("\r"))
		out = append(out, line...)
		out = append(out, '\r', '\n')
		msg = msg[i+1:]
	}
	return out
}

// Field is one header field as it came, name and value, the value still
// folded, without the final CRLF.
type Field struct {
	Name string // as written
	Raw  string // the whole field: "Name:value", folded lines joined by CRLF
}

// Value is the field's value: everything after the first colon.
func (f Field) Value() string {
	_, v, _ := strings.Cut(f.Raw, ":")
	return v
}

// ErrNoHeader says a message has no header/body separator and no header
// field: nothing to sign or verify.
var ErrNoHeader = errors.New("message has no header")

// Split splits a CRLF message into its header fields and its body (what
// follows the empty line). A message without a blank line is all header.
// A line that is neither a field nor a continuation is an error: the
// header cannot be read the same way by every reader.
func Split(msg []byte) ([]Field, []byte, error) {
	var fields []Field
	rest := msg
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+2:]
		}
		if len(line) == 0 {
			return fields, rest, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, nil, errors.New("message starts with a continuation line")
			}
			fields[len(fields)-1].Raw += "\r\n" + string(line)
			continue
		}
		name, _, ok := strings.Cut(string(line), ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, nil, errors.New("header line without a field name: " + quoteShort(line))
		}
		fields = append(fields, Field{Name: name, Raw: string(line)})
	}
	if len(fields) == 0 {
		return nil, nil, ErrNoHeader
	}
	return fields, nil, nil
}

func quoteShort(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// ParseTags reads a DKIM tag list (RFC 6376 §3.2): tag=value pairs
// separated by semicolons, whitespace around them ignored. A tag given
// twice, a tag without '=' or a bad tag name is an error, as the RFC asks.
func ParseTags(s string) (map[string]string, error) {
	tags := make(map[string]string)
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errors.New("tag without '=': " + strings.TrimSpace(part))
		}
		k = strings.TrimSpace(k)
		if !validTagName(k) {
			return nil, errors.New("bad tag name: " + k)
		}
		if _, dup := tags[k]; dup {
			return nil, errors.New("tag given twice: " + k)
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags, nil
}

func validTagName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range []byte(k) {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !(alpha || i > 0 && (c == '_' || c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// StripWSP removes every space, tab, CR and LF: base64 tag values and
// lists may be folded anywhere.
func StripWSP(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
