package acl

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// MaxLineBytes is the longest rules line Parse accepts. tcprules has no
// limit; a line this long is a mistake (a file without line ends), and the
// limit keeps a wrong input from eating memory.
const MaxLineBytes = 1 << 20

// Rule is one rules line that says allow or deny.
type Rule struct {
	Line    int      // 1-based line number in the rules text
	Text    string   // the line after trailing blanks were stripped
	Address string   // the bytes before the separating colon, verbatim
	Deny    bool     // deny (assignments are kept but never applied)
	Env     []string // "NAME=VALUE" items in the order written
}

// ParseError is a rules line that tcprules would refuse. Its Error names
// the line number, what is wrong and the line itself.
type ParseError struct {
	Line   int
	Text   string // the line after trailing blanks were stripped
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("unable to parse line %d: %s: %s", e.Line, e.Reason, quoteLine(e.Text))
}

// Temporary reports false: a bad rules file stays bad until edited.
func (e *ParseError) Temporary() bool { return false }

// errLineTooLong is the reason for a line over MaxLineBytes.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// Parse reads rules text from r and calls emit for every rule line in
// order. It stops at the first bad line with a *ParseError, at a read
// error, or at the first error emit returns.
func Parse(r io.Reader, emit func(Rule) error) error {
	return parseInput(r, nil, func(p *parsed) error { return emit(p.rule()) })
}

// parsed is a rule line as the parser sees it: its text and parts are
// substrings of the input, its assignments (name, value) pairs.
type parsed struct {
	line    int
	text    string
	address string
	deny    bool
	env     [][2]string
}

// rule returns p as a Rule of its own.
func (p *parsed) rule() Rule {
	r := Rule{Line: p.line, Text: p.text, Address: p.address, Deny: p.deny}
	if len(p.env) > 0 {
		r.Env = make([]string, len(p.env))
		for i, kv := range p.env {
			r.Env[i] = kv[0] + "=" + kv[1]
		}
	}
	return r
}

// parseInput reads all of r and calls emit for every rule line in order;
// emit must not keep p, which the next line reuses. A read error is
// reported once the lines read whole before it have been parsed, as
// reading line by line would. sized, if not nil, sees the input first.
func parseInput(r io.Reader, sized func(string), emit func(*parsed) error) error {
	data, rerr := readAll(r)
	if sized != nil {
		sized(data)
	}
	var p parsed
	if err := parseText(data, rerr == nil, &p, emit); err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("unable to read input: %w", rerr)
	}
	return nil
}

// readAll reads r to its end in one buffer, sized at once when r is a
// regular file, and returns it as a string: every rule's text is then a
// substring of it, not a copy.
func readAll(r io.Reader) (string, error) {
	var b bytes.Buffer
	if f, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			b.Grow(int(fi.Size()) + 1)
		}
	}
	_, err := b.ReadFrom(r)
	return b.String(), err
}

// parseText parses the lines of data; complete says data is the whole
// input, so that its last line may lack its "\n". Without it an
// unterminated tail is only checked for length.
func parseText(data string, complete bool, p *parsed, emit func(*parsed) error) error {
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		} else if !complete {
			if len(line) > MaxLineBytes {
				return &ParseError{Line: n, Text: line[:80] + "...", Reason: errLineTooLong.Error()}
			}
			return nil
		}
		data = data[len(line):]
		if len(line) > MaxLineBytes {
			return &ParseError{Line: n, Text: line[:80] + "...", Reason: errLineTooLong.Error()}
		}
		ok, perr := parseLine(n, line, p)
		if perr != nil {
			return perr
		}
		if ok {
			if err := emit(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseLine parses one line (with or without its "\n") as line number n.
// ok is false for the lines tcprules passes over in silence: comments
// ("#" in column 1), empty and blank lines, and lines without a colon.
func ParseLine(n int, line []byte) (rule Rule, ok bool, err error) {
	var p parsed
	ok, perr := parseLine(n, string(line), &p)
	if perr != nil {
		return Rule{}, false, perr
	}
	if !ok {
		return Rule{}, false, nil
	}
	return p.rule(), true, nil
}

// parseLine parses line into p, reusing p's env.
func parseLine(n int, line string, p *parsed) (bool, *ParseError) {
	if len(line) == 0 || line[0] == '#' || line[0] == '\n' {
		return false, nil
	}
	end := len(line)
	for end > 0 && (line[end-1] == '\n' || line[end-1] == ' ' || line[end-1] == '\t') {
		end--
	}
	text := line[:end]
	fail := func(format string, args ...any) (bool, *ParseError) {
		return false, &ParseError{Line: n, Text: text, Reason: fmt.Sprintf(format, args...)}
	}
	first := strings.IndexByte(text, ':')
	if first < 0 {
		return false, nil
	}
	sep := separator(text, first)
	if sep < 0 {
		rest := text[first+1:]
		if w := leadingWord(rest); strings.EqualFold(w, "allow") || strings.EqualFold(w, "deny") {
			return fail("%q must be written in lower case", w)
		}
		if strings.HasPrefix(strings.TrimLeft(rest, " \t"), "allow") || strings.HasPrefix(strings.TrimLeft(rest, " \t"), "deny") {
			return fail("blank between the colon and allow or deny")
		}
		return fail("the first colon is not followed by allow or deny")
	}
	*p = parsed{line: n, text: text, address: text[:sep], env: p.env[:0]}
	rest := text[sep+1:]
	if strings.HasPrefix(rest, "deny") {
		p.deny, rest = true, rest[len("deny"):]
	} else {
		rest = rest[len("allow"):]
	}
	verb := text[sep+1 : len(text)-len(rest)]
	lastName, named := "", false // the value the next byte follows, for messages
	for rest != "" {
		if rest[0] != ',' {
			if rest == "\r" {
				return fail("the line ends with a carriage return (DOS line ends?)")
			}
			after := verb
			if named {
				after = "the value of " + lastName
			}
			return fail("after %s comes %q where a comma or the end of the line belongs", after, clip(rest))
		}
		rest = rest[1:]
		if rest == "" {
			return fail("nothing follows the last comma")
		}
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			return fail("assignment %q has no \"=\"", clip(rest))
		}
		name := rest[:eq]
		rest = rest[eq+1:]
		if rest == "" {
			return fail("%s= has no value: write %s=\"\" for the empty string", name, name)
		}
		quote := rest[0]
		end := strings.IndexByte(rest[1:], quote)
		if end < 0 {
			return fail("the value of %s has no closing %s (a value ends at the next copy of the byte that follows \"=\")", name, showByte(quote))
		}
		p.env = append(p.env, [2]string{name, rest[1 : 1+end]})
		rest = rest[1+end+1:]
		lastName, named = name, true
	}
	if err := checkAddress(p.address); err != "" {
		return fail("%s", err)
	}
	return true, nil
}

// separator returns the index of the colon that ends the address, or -1.
// tcprules uses the first colon. ucspi-tcp6 uses the first colon followed
// by allow or deny, so that "2001:db8::1:allow" has address "2001:db8::1";
// that reading is taken here only when the address looks like an IPv6
// address, so that every line tcprules refuses for another reason is still
// refused.
func separator(text string, first int) int {
	if verbAt(text, first) {
		return first
	}
	for i := first + 1; i < len(text); i++ {
		if text[i] == ':' && verbAt(text, i) {
			if looksIPv6(text[:i]) {
				return i
			}
			return -1
		}
	}
	return -1
}

func verbAt(text string, colon int) bool {
	rest := text[colon+1:]
	return strings.HasPrefix(rest, "allow") || strings.HasPrefix(rest, "deny")
}

// looksIPv6 reports whether addr, after an optional "info@", is made of
// hex digits, colons, dots, and the "-" of a range or the "/" of a CIDR
// prefix: the shapes an IPv6 rule address takes.
func looksIPv6(addr string) bool {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		addr = addr[at+1:]
	}
	if !strings.Contains(addr, ":") {
		return false
	}
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' ||
			c == ':' || c == '.' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

func leadingWord(s string) string {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	return s[:i]
}

// showByte shows a quote byte in a message.
func showByte(c byte) string {
	if c > ' ' && c < 0x7f {
		return string(c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// quoteLine shows a rules line in a message: as written when it is plain
// printable text, Go-quoted when it holds a control byte (a CR, a NUL).
func quoteLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}
