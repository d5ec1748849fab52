package dkim

import (
	"crypto"
	"strings"
)

// RelaxedHeader is a field canonicalised by RFC 6376 §3.4.2's relaxed
// algorithm: name lowercased, value unfolded, runs of whitespace made one
// space, whitespace around the colon and at the end dropped; with CRLF.
func RelaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + strings.Join(strings.FieldsFunc(value, isWSP), " ") + "\r\n"
}

// isWSP is whitespace as mail knows it; not Unicode's, whose spaces
// (U+00A0, U+0085) in an 8-bit header are text.
func isWSP(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// SimpleHeader is a field canonicalised by the simple algorithm: as it
// came, with CRLF.
func SimpleHeader(raw string) string { return raw + "\r\n" }

// BodyHash hashes a CRLF body canonicalised by canon ("relaxed" or
// "simple"), RFC 6376 §3.4.3 and §3.4.4.
func BodyHash(h crypto.Hash, canon string, body []byte) []byte {
	w := h.New()
	w.Write(CanonBody(canon, body))
	return w.Sum(nil)
}

// CanonBody canonicalises a CRLF body. Relaxed drops trailing whitespace
// on each line and makes runs of whitespace one space; both drop the empty
// lines at the end. Simple keeps one CRLF for an empty body; relaxed
// keeps nothing.
func CanonBody(canon string, body []byte) []byte {
	lines := strings.Split(string(body), "\r\n")
	// A body that ends in CRLF splits into a last empty element: it is
	// the end of the last line, not a line.
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	if canon == "relaxed" {
		for i, l := range lines {
			lines[i] = relaxLine(l)
		}
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		if canon == "relaxed" {
			return nil
		}
		return []byte("\r\n")
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func relaxLine(l string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

// HeaderHashInput is what a signature over fields covers: the fields
// named in names, each picked from the bottom of the header up (a name
// listed twice takes the next one up, a name with none left adds
// nothing: how oversigning works), canonicalised by canon, and last the
// signature field itself with its b= value emptied and no CRLF.
func HeaderHashInput(fields []Field, names []string, canon string, sigRaw string) []byte {
	var b strings.Builder
	used := make(map[int]bool)
	for _, name := range names {
		for i := len(fields) - 1; i >= 0; i-- {
			if used[i] || !strings.EqualFold(fields[i].Name, strings.TrimSpace(name)) {
				continue
			}
			used[i] = true
			b.WriteString(canonHeader(canon, fields[i].Raw))
			break
		}
	}
	b.WriteString(strings.TrimSuffix(canonHeader(canon, EmptyB(sigRaw)), "\r\n"))
	return []byte(b.String())
}

func canonHeader(canon, raw string) string {
	if canon == "simple" {
		return SimpleHeader(raw)
	}
	return RelaxedHeader(raw)
}

// EmptyB returns a signature field with the value of its b= tag removed,
// everything else (folding included) kept, as RFC 6376 §3.7 hashes it.
func EmptyB(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	parts := strings.Split(value, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.TrimSpace(k) == "b" {
			eq := strings.IndexByte(p, '=')
			parts[i] = p[:eq+1]
		}
	}
	return name + ":" + strings.Join(parts, ";")
}

// ParseCanon reads a c= value: header/body, body simple when absent.
func ParseCanon(c string) (header, body string, ok bool) {
	if c == "" {
		return "simple", "simple", true
	}
	header, body, found := strings.Cut(c, "/")
	if !found {
		body = "simple"
	}
	valid := func(s string) bool { return s == "simple" || s == "relaxed" }
	return header, body, valid(header) && valid(body)
}
