package acl

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary text to the rules parser. Beyond not
// crashing, every rule it accepts must describe its own line (address,
// colon, verb), and must come back unchanged when written out again
// with a quote byte its values do not hold; every refusal must be a
// ParseError naming a line of the input.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"A", "B", "C6", "D6"} {
		if b, err := os.ReadFile("testdata/vectors/" + name + ".rules"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Count(in, []byte("\n")) + 1
		err := Parse(bytes.NewReader(in), func(r Rule) error {
			if r.Line < 1 || r.Line > lines {
				t.Fatalf("rule on line %d of a %d-line input", r.Line, lines)
			}
			rest, ok := strings.CutPrefix(r.Text, r.Address+":")
			if !ok || !(strings.HasPrefix(rest, "allow") || strings.HasPrefix(rest, "deny")) {
				t.Fatalf("rule %+v does not describe its line", r)
			}
			again, ok, err := ParseLine(r.Line, []byte(rewrite(r)+"\n"))
			again.Text = r.Text
			if err != nil || !ok || !reflect.DeepEqual(again, r) {
				t.Fatalf("rule %+v written as %q parses as %+v, %v, %v", r, rewrite(r), again, ok, err)
			}
			c := NewCompiled()
			if _, err := c.Add(r); err != nil {
				t.Fatalf("a parsed rule does not compile: %v", err)
			}
			return nil
		})
		var pe *ParseError
		if err != nil && (!errors.As(err, &pe) || pe.Line < 1 || pe.Line > lines) {
			t.Fatalf("Parse error %v is not a ParseError naming one of %d lines", err, lines)
		}
	})
}

// rewrite writes r back as a rules line, each value quoted with a byte
// it does not hold.
func rewrite(r Rule) string {
	var b strings.Builder
	b.WriteString(r.Address + ":")
	if r.Deny {
		b.WriteString("deny")
	} else {
		b.WriteString("allow")
	}
	for _, item := range r.Env {
		name, value, _ := strings.Cut(item, "=")
		q := byte('"')
		for strings.IndexByte(value, q) >= 0 {
			q++
		}
		b.WriteString("," + name + "=" + string([]byte{q}) + value + string([]byte{q}))
	}
	return b.String()
}
