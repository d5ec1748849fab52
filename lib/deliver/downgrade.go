package deliver

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
)

// Downgrade makes a message fit for a server that did not offer 8BITMIME
// (RFC 6152): every MIME leaf part whose content holds 8-bit bytes is
// re-encoded as quoted-printable and labelled so; multipart and
// message/rfc822 entities, which may not be encoded themselves (RFC 2046
// 5.1, 5.2.1), are walked into and relabelled 7bit. A message with no
// 8-bit byte is returned as it is, the same slice.
//
// What cannot be made 7-bit without changing what the recipient reads is
// refused with a *DowngradeError, and the message then fails 5.6.3:
//   - 8-bit bytes in a header field, the message's or a part's: encoding
//     them (RFC 2047) is safe in some fields and not in others (an
//     address, a parameter), and gw does not guess which;
//   - 8-bit bytes in a part that says it is already quoted-printable or
//     base64, or in an unknown encoding: re-encoding would change it;
//   - 8-bit bytes in a multipart's preamble or epilogue, or in a multipart
//     with no boundary parameter or no boundary line: there is no part to
//     label;
//   - 8-bit bytes in a message/* other than rfc822 and global;
//   - MIME nested deeper than maxMIMEDepth.
//
// Line ends may be LF or CRLF. The quoted-printable text keeps each line
// end as a hard line break (so it decodes to CRLF, as the raw part would
// have gone out on the wire) and encodes a lone CR as =0D (raw, it would
// have gone out as a space). A part whose header lacks Content-Type gets
// "text/plain; charset=unknown-8bit" (RFC 1428): its default, us-ascii,
// is what the 8-bit bytes show it is not. The message gets
// "MIME-Version: 1.0" when it lacks one.
func Downgrade(msg []byte) ([]byte, error) {
	if !has8bit(msg) {
		return msg, nil
	}
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/2)
	if err := downgradeEntity(&out, msg, "text/plain", true, 0); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// DowngradeError says why a message could not be made 7-bit.
type DowngradeError struct{ Reason string }

func (e *DowngradeError) Error() string { return e.Reason }

func cannot(format string, a ...any) error {
	return &DowngradeError{Reason: fmt.Sprintf(format, a...)}
}

// maxMIMEDepth bounds the recursion a hostile message could ask for.
const maxMIMEDepth = 50

// qpLineMax is the longest encoded line, soft break included (RFC 2045
// 6.7 rule 5).
const qpLineMax = 76

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// field is one header field, its raw lines and its unfolded value.
type field struct {
	raw   []byte
	name  string // lower case
	value string
}

// splitEntity cuts an entity into its header fields, the empty line that
// ends them (nil if none) and its body.
func splitEntity(b []byte) (fields []field, sep, body []byte) {
	i := 0
	for i < len(b) {
		end := bytes.IndexByte(b[i:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += i + 1
		}
		line := b[i:end]
		if string(line) == "\n" || string(line) == "\r\n" {
			return fields, line, b[end:]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = b[i-len(f.raw) : end]
			f.value += " " + strings.TrimSpace(string(line))
		} else {
			f := field{raw: line}
			if k := bytes.IndexByte(line, ':'); k > 0 {
				f.name = strings.ToLower(strings.TrimSpace(string(line[:k])))
				f.value = strings.TrimSpace(string(line[k+1:]))
			}
			fields = append(fields, f)
		}
		i = end
	}
	return fields, nil, nil
}

// lookup returns the value of the first field named name (lower case).
func lookup(fields []field, name string) (string, bool) {
	for _, f := range fields {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

// eolOf is the line end an entity's header uses, for the fields gw adds.
func eolOf(fields []field, sep []byte) string {
	if len(fields) > 0 && bytes.HasSuffix(fields[0].raw, []byte("\r\n")) {
		return "\r\n"
	}
	if len(fields) == 0 && string(sep) == "\r\n" {
		return "\r\n"
	}
	return "\n"
}

// downgradeEntity writes entity b to out, made 7-bit. deflt is the
// Content-Type it has when it says none (RFC 2046 5.1.5: message/rfc822
// in a multipart/digest); message is true for a whole message (the top,
// or the content of a message/rfc822), which must carry MIME-Version.
func downgradeEntity(out *bytes.Buffer, b []byte, deflt string, message bool, depth int) error {
	if depth > maxMIMEDepth {
		return cannot("MIME parts nested more than %d deep", maxMIMEDepth)
	}
	fields, sep, body := splitEntity(b)
	for _, f := range fields {
		if has8bit(f.raw) {
			return cannot("8-bit bytes in a header field (%.40q)", headerName(f.raw))
		}
	}
	if !has8bit(body) {
		out.Write(b)
		return nil
	}
	ctype, hasType := lookup(fields, "content-type")
	if !hasType {
		ctype = deflt
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil && mt == "" {
		// An unreadable Content-Type: treated as an opaque leaf
		// (RFC 2045 5.2 says application/octet-stream).
		mt = "application/octet-stream"
	}
	cte, _ := lookup(fields, "content-transfer-encoding")
	cte = strings.ToLower(cte)
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	eol := eolOf(fields, sep)
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if !identity {
			return cannot("a multipart part with an encoding (%.40q)", cte)
		}
		boundary := params["boundary"]
		if boundary == "" {
			return cannot("a multipart part without a boundary")
		}
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		writeHeader(out, fields, sep, "7bit", "", message, eol)
		return downgradeMultipart(out, body, boundary, child, depth)
	case mt == "message/rfc822" || mt == "message/global":
		if !identity {
			return cannot("a message part with an encoding (%.40q)", cte)
		}
		writeHeader(out, fields, sep, "7bit", "", message, eol)
		return downgradeEntity(out, body, "text/plain", true, depth+1)
	case strings.HasPrefix(mt, "message/"):
		return cannot("8-bit bytes in a %s part", mt)
	}
	if !identity {
		return cannot("8-bit bytes in a part encoded as %.40q", cte)
	}
	addType := ""
	if !hasType && deflt == "text/plain" {
		addType = "text/plain; charset=unknown-8bit"
	}
	writeHeader(out, fields, sep, "quoted-printable", addType, message, eol)
	writeQP(out, body, eol)
	return nil
}

func headerName(raw []byte) string {
	if k := bytes.IndexByte(raw, ':'); k > 0 {
		return string(raw[:k])
	}
	return string(raw)
}

// writeHeader writes an entity's header with its Content-Transfer-Encoding
// set to cte (in place of the first, the others dropped; added at the end
// when there is none), a Content-Type added if addType is set, and a
// MIME-Version added to a message that lacks one. The fields it does not
// touch go out byte for byte.
func writeHeader(out *bytes.Buffer, fields []field, sep []byte, cte, addType string, message bool, eol string) {
	cteLine := "Content-Transfer-Encoding: " + cte + eol
	wrote := false
	hasVersion := false
	for _, f := range fields {
		switch f.name {
		case "content-transfer-encoding":
			if !wrote {
				if cte == "7bit" && (f.value == "7bit" || f.value == "") {
					out.Write(f.raw)
				} else {
					out.WriteString(cteLine)
				}
				wrote = true
			}
			continue
		case "mime-version":
			hasVersion = true
		}
		out.Write(f.raw)
	}
	// A last field without a line end (a header with no body after it
	// cannot have 8-bit content, so this is only for safety).
	if n := len(fields); n > 0 && !bytes.HasSuffix(fields[n-1].raw, []byte("\n")) {
		out.WriteString(eol)
	}
	if message && !hasVersion {
		out.WriteString("MIME-Version: 1.0" + eol)
	}
	if addType != "" {
		out.WriteString("Content-Type: " + addType + eol)
	}
	if !wrote && cte != "7bit" {
		out.WriteString(cteLine)
	}
	if sep == nil {
		sep = []byte(eol)
	}
	out.Write(sep)
}

// downgradeMultipart writes a multipart body, each part made 7-bit. The
// line end before a boundary line belongs to the boundary (RFC 2046
// 5.1.1), not to the part before it.
func downgradeMultipart(out *bytes.Buffer, body []byte, boundary, child string, depth int) error {
	delim := []byte("--" + boundary)
	start := -1 // where the current part's content begins, -1 in the preamble
	closed := false
	i := 0
	for i < len(body) && !closed {
		end := bytes.IndexByte(body[i:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += i + 1
		}
		kind := delimiterKind(body[i:end], delim)
		if kind == 0 {
			i = end
			continue
		}
		// body[i:end] is a boundary line; what comes before it, less
		// the line end that belongs to it, is the preamble or a part.
		content, tail := cutLineEnd(body[max(start, 0):i], i > 0)
		if start < 0 {
			if has8bit(content) {
				return cannot("8-bit bytes in a multipart preamble")
			}
			out.Write(content)
		} else if err := downgradeEntity(out, content, child, false, depth+1); err != nil {
			return err
		}
		out.Write(tail)
		out.Write(body[i:end])
		start = end
		closed = kind == 2
		i = end
	}
	if start < 0 {
		return cannot("a multipart part whose boundary never comes")
	}
	rest := body[start:]
	if closed {
		if has8bit(rest) {
			return cannot("8-bit bytes in a multipart epilogue")
		}
		out.Write(rest)
		return nil
	}
	// No closing boundary: the last part runs to the end.
	return downgradeEntity(out, rest, child, false, depth+1)
}

// delimiterKind tells a boundary line (1), a closing one (2) or neither
// (0). Trailing white space is transport padding (RFC 2046 5.1.1).
func delimiterKind(line, delim []byte) int {
	if !bytes.HasPrefix(line, delim) {
		return 0
	}
	rest := line[len(delim):]
	kind := 1
	if bytes.HasPrefix(rest, []byte("--")) {
		kind, rest = 2, rest[2:]
	}
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return 0
	}
	return kind
}

// cutLineEnd splits b's final line end off, when it has one and a
// boundary line follows.
func cutLineEnd(b []byte, follows bool) (content, tail []byte) {
	if !follows {
		return b, nil
	}
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
		return b[:len(b)-2], b[len(b)-2:]
	case bytes.HasSuffix(b, []byte("\n")):
		return b[:len(b)-1], b[len(b)-1:]
	}
	return b, nil
}

// writeQP writes body as quoted-printable (RFC 2045 6.7): each line end
// (LF or CRLF) a hard line break written as eol, lines longer than
// qpLineMax cut by soft breaks.
func writeQP(out *bytes.Buffer, body []byte, eol string) {
	for len(body) > 0 {
		line := body
		hard := false
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body, hard = body[:i], body[i+1:], true
			line = bytes.TrimSuffix(line, []byte{'\r'})
		} else {
			body = nil
		}
		qpLine(out, line, eol)
		if hard {
			out.WriteString(eol)
		}
	}
}

const hexDigits = "0123456789ABCDEF"

// qpLine encodes one line's bytes. Besides what RFC 2045 requires (=,
// control and 8-bit bytes, white space at the end), a '-' that would
// begin an encoded line is encoded, so that no line of a part can be
// taken for a boundary line of the multipart around it.
func qpLine(out *bytes.Buffer, line []byte, eol string) {
	col := 0
	var tok [3]byte
	for k, c := range line {
		last := k == len(line)-1
		n := qpToken(&tok, c, col == 0, last)
		limit := qpLineMax - 1 // room for the soft break's '='
		if last {
			limit = qpLineMax
		}
		if col+n > limit {
			out.WriteString("=" + eol)
			col = 0
			n = qpToken(&tok, c, true, last)
		}
		out.Write(tok[:n])
		col += n
	}
}

// qpToken puts the encoding of c into tok and returns its length.
func qpToken(tok *[3]byte, c byte, lineStart, last bool) int {
	literal := c >= 33 && c <= 126 && c != '='
	if c == ' ' || c == '\t' {
		literal = !last
	}
	if c == '-' && lineStart {
		literal = false
	}
	if literal {
		tok[0] = c
		return 1
	}
	tok[0], tok[1], tok[2] = '=', hexDigits[c>>4], hexDigits[c&15]
	return 3
}
