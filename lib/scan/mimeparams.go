package scan

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// mimeField is one header field of a part: its name in lower case and its
// value unfolded, as Python's email package keeps it.
type mimeField struct {
	name, value string
}

type mimeHeader []mimeField

// parseMIMEHeader reads the fields of a header block. Lines are those the
// walk took as header lines: "name:" lines, continuations, "From " lines.
// A continuation with no field before it, a "From " line and a line with
// an empty name are ignored, as Python's parser ignores them (as defects).
func parseMIMEHeader(lines [][]byte) mimeHeader {
	var h mimeHeader
	var value []byte // of the last field, unfolded
	field := false
	end := func() {
		if field {
			h[len(h)-1].value = string(value)
		}
	}
	for _, l := range lines {
		if l[0] == ' ' || l[0] == '\t' {
			if field {
				value = appendUnfolded(value, l)
			}
			continue
		}
		if bytes.HasPrefix(l, []byte("From ")) {
			continue
		}
		i := bytes.IndexByte(l, ':')
		if i <= 0 {
			continue
		}
		end()
		h = append(h, mimeField{name: strings.ToLower(string(l[:i]))})
		value = appendUnfolded(value[:0], bytes.TrimLeft(l[i+1:], " \t"))
		field = true
	}
	end()
	return h
}

// appendUnfolded appends a header line without its line breaks.
func appendUnfolded(dst, l []byte) []byte {
	for _, c := range l {
		if c != '\r' && c != '\n' {
			dst = append(dst, c)
		}
	}
	return dst
}

// get returns the first field called name: the one Python's parser uses.
func (h mimeHeader) get(name string) (string, bool) {
	for _, f := range h {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

// all returns the values of every field called name.
func (h mimeHeader) all(name string) []string {
	var vs []string
	for _, f := range h {
		if f.name == name {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// names returns every file name the part's header may give. Python's
// get_filename takes Content-Disposition's filename, else Content-Type's
// name; a reader may take either, or the other way round, so all count.
func (h mimeHeader) names() []string {
	cd, ct := h.all("content-disposition"), h.all("content-type")
	names := paramValues(cd, "filename")
	names = append(names, paramValues(ct, "name")...)
	names = append(names, paramValues(cd, "name")...)
	return append(names, paramValues(ct, "filename")...)
}

// contentType is the part's type as Python's email package resolves it:
// the first Content-Type up to ';', in lower case; def when there is none
// (text/plain, or message/rfc822 in a multipart/digest); text/plain when
// it is not "type/subtype".
func (h mimeHeader) contentType(def string) string {
	v, ok := h.get("content-type")
	if !ok {
		return def
	}
	t, _, _ := strings.Cut(v, ";")
	t = strings.ToLower(strings.TrimSpace(t))
	if strings.Count(t, "/") != 1 {
		return "text/plain"
	}
	return t
}

// mimeParam is one "name=value" of a structured field, split as Python's
// email.message splits them: at ';' outside quotes, name in lower case,
// both sides trimmed.
type mimeParam struct {
	name, value string
}

func splitParams(v string) []mimeParam {
	var out []mimeParam
	for len(v) > 0 {
		end := paramEnd(v)
		seg := v[:end]
		if end < len(v) {
			v = v[end+1:]
		} else {
			v = ""
		}
		name, val, _ := strings.Cut(seg, "=")
		out = append(out, mimeParam{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(val)})
	}
	return out
}

// paramEnd finds the ';' that ends the first parameter of v: one not
// inside a quoted string.
func paramEnd(v string) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return i
			}
		}
	}
	return len(v)
}

// rfc2231Name matches the name of an RFC 2231 parameter section:
// "filename*", "filename*0", "filename*1*".
var rfc2231Name = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([A-Za-z0-9_]+)\*(([0-9]+)\*?)?$`) })

type section struct {
	num     int
	value   string
	encoded bool
}

// paramValues returns every value the header values vs may give parameter
// want: plain, quoted, cut at the first blank, RFC 2231 sections joined and
// decoded, RFC 2047 words decoded. Readers of damaged headers disagree on
// which is meant, so the rules look at all of them.
func paramValues(vs []string, want string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] && len(out) < 64 {
			seen[s] = true
			out = append(out, s)
		}
	}
	var readings []string
	for _, v := range vs {
		readings = append(readings, v)
		// Python closes a comment left open at the end of the field,
		// and the ')' joins the last value.
		if open := strings.Count(v, "(") - strings.Count(v, ")"); open > 0 {
			readings = append(readings, v+strings.Repeat(")", open))
		}
	}
	for _, v := range readings {
		sections := map[string][]section{}
		for _, p := range splitParams(v) {
			if p.name == want {
				for _, c := range valueReadings(p.value) {
					add(c)
					add(decodeWords(c))
				}
				continue
			}
			m := rfc2231Name().FindStringSubmatch(p.name)
			if m == nil || strings.ToLower(m[1]) != want {
				continue
			}
			n, _ := strconv.Atoi(m[3])
			sections[m[1]] = append(sections[m[1]], section{n, p.value, strings.HasSuffix(p.name, "*")})
		}
		for _, secs := range sections {
			for _, joined := range sectionReadings(secs) {
				add(joined)
				add(decodeWords(joined))
			}
		}
	}
	return out
}

// valueReadings are the ways a parameter value can be read: unquoted (a
// quoted string up to its closing quote, or to the end when it has none)
// and, unquoted, cut at the first blank or special.
func valueReadings(v string) []string {
	if strings.HasPrefix(v, `"`) {
		q, _ := quotedString(v)
		return []string{q, strings.Trim(v, `"`)}
	}
	tok := v
	if i := strings.IndexAny(v, tspecials); i >= 0 {
		tok = v[:i]
	}
	return []string{v, tok}
}

// quotedString reads the quoted string that starts v: its text with the
// quoted pairs resolved, and what follows its closing quote. An unclosed
// string runs to the end.
func quotedString(v string) (string, string) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '"':
			return b.String(), v[i+1:]
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String(), ""
}

// sectionReadings are the ways RFC 2231 sections can be joined: all of
// them or only those up to the first gap in their numbers (where Python
// stops), each value whole or cut at its first blank or special.
func sectionReadings(secs []section) []string {
	sort.SliceStable(secs, func(i, j int) bool { return secs[i].num < secs[j].num })
	run := len(secs)
	for i, s := range secs {
		if s.num != i {
			run = i
			break
		}
	}
	var out []string
	for _, cut := range []bool{false, true} {
		out = append(out, joinSections(secs, cut))
		if run > 0 && run < len(secs) {
			out = append(out, joinSections(secs[:run], cut))
		}
	}
	return out
}

// joinSections joins RFC 2231 sections in order (cut: each value up to a
// blank or special); when any is encoded, the whole is
// charset'language'text with %XX octets.
func joinSections(secs []section, cut bool) string {
	sort.SliceStable(secs, func(i, j int) bool { return secs[i].num < secs[j].num })
	var b strings.Builder
	extended := false
	for _, s := range secs {
		v := s.value
		if strings.HasPrefix(v, `"`) {
			v, _ = quotedString(v)
		} else if cut {
			if i := strings.IndexAny(v, tspecials); i >= 0 {
				v = v[:i]
			}
		}
		if s.encoded {
			if u, err := url.PathUnescape(strings.ReplaceAll(v, "+", "%2B")); err == nil {
				v = u
			}
			extended = true
		}
		b.WriteString(v)
	}
	s := b.String()
	if !extended {
		return s
	}
	parts := strings.SplitN(s, "'", 3)
	if len(parts) < 3 {
		return s
	}
	text := parts[2]
	if strings.EqualFold(parts[0], "utf-8") && utf8.ValidString(text) {
		return text
	}
	return latin1(text)
}

// latin1 reads the bytes of s as ISO 8859-1.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}

// encodedWord matches an RFC 2047 encoded word, loosely: Python's email
// package decodes words with blanks or bad octets in them too.
var encodedWord = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`=\?([^?\s]*)\?([bBqQ])\?([^?]*)\?=`) })

// decodeWords decodes RFC 2047 encoded words wherever they are, as
// leniently as Python's email package: a bad =XX is kept as it is, base64
// that does not decode stays as its text, blanks between two words go.
// The charset is read as UTF-8, else as Latin-1: only the name matters,
// and its extension is ASCII.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	var b strings.Builder
	last := 0
	prevWord := false
	for _, m := range encodedWord().FindAllStringSubmatchIndex(s, -1) {
		gap := s[last:m[0]]
		if !prevWord || strings.TrimSpace(gap) != "" {
			b.WriteString(gap)
		}
		text := s[m[6]:m[7]]
		var raw []byte
		if s[m[4]] == 'b' || s[m[4]] == 'B' {
			raw = looseBase64(text)
		} else {
			raw = looseQ(text)
		}
		if utf8.Valid(raw) {
			b.Write(raw)
		} else {
			b.WriteString(latin1(string(raw)))
		}
		last, prevWord = m[1], true
	}
	b.WriteString(s[last:])
	return b.String()
}

func looseQ(text string) []byte {
	var out []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			v, _ := strconv.ParseUint(text[i+1:i+3], 16, 8)
			out = append(out, byte(v))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func looseBase64(text string) []byte {
	clean := strings.TrimRight(strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' {
			return r
		}
		return -1
	}, text), "=")
	if out, err := base64.RawStdEncoding.DecodeString(clean); err == nil {
		return out
	}
	return []byte(text)
}

// boundary returns the boundary of a multipart as Python's email package
// finds it (the first "boundary" parameter, else the RFC 2231 sections,
// trailing blanks removed), and whether there is one. doubt is set when
// readers may disagree about it: more than one, a value cut short at a
// special, quotes left open, encoded words.
func (h mimeHeader) boundary() (b string, ok bool, doubt string) {
	v, _ := h.get("content-type")
	var plain []string
	var secs []section
	for _, p := range splitParams(v) {
		if p.name == "boundary" {
			plain = append(plain, p.value)
		} else if m := rfc2231Name().FindStringSubmatch(p.name); m != nil && strings.ToLower(m[1]) == "boundary" {
			n, _ := strconv.Atoi(m[3])
			secs = append(secs, section{n, p.value, strings.HasSuffix(p.name, "*")})
		}
	}
	if len(plain)+min(len(secs), 1) > 1 {
		doubt = "boundary given twice"
	}
	switch {
	case len(plain) > 0:
		b, ok, d := boundaryValue(plain[0])
		if doubt == "" {
			doubt = d
		}
		return strings.TrimRight(b, " \t\v\f\r\n\x1c\x1d\x1e\x1f"), ok, doubt
	case len(secs) > 0:
		return strings.TrimRight(joinSections(secs, false), " \t\v\f\r\n\x1c\x1d\x1e\x1f"), true, doubt
	}
	return "", false, doubt
}

// tspecials end an unquoted value (RFC 2045 5.1).
const tspecials = " \t()<>@,;:\\\"/[]?="

func boundaryValue(v string) (string, bool, string) {
	if strings.HasPrefix(v, `"`) {
		q, rest := quotedString(v)
		doubt := ""
		if strings.TrimSpace(rest) != "" || !strings.Contains(v[1:], `"`) {
			doubt = "boundary: text after its quotes or no closing quote"
		}
		if strings.Contains(q, "=?") {
			doubt = "boundary: encoded words"
			if d := decodeWords(q); d != q && !strings.Contains(d, "=?") && strings.HasPrefix(strings.TrimSpace(q), "=?") && strings.HasSuffix(strings.TrimSpace(q), "?=") {
				q = d // Python decodes a quoted value that is all encoded words
			}
		}
		return q, true, doubt
	}
	tok := v
	if i := strings.IndexAny(v, tspecials); i >= 0 {
		tok = v[:i]
	}
	doubt := ""
	if tok != v {
		doubt = "boundary: unquoted value cut at a special character"
	}
	if tok == "" && v != "" {
		return "", false, doubt
	}
	return tok, true, doubt
}
