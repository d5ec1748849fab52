package mailbox

import (
	"errors"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	cases := []struct {
		stored, path string
		err          error
	}{
		{"u@example.com", "u@example.com", nil},
		{"", "", nil},
		{DoubleBounce, DoubleBounce, nil},
		{"Postmaster", "Postmaster", nil},
		{"u@[192.0.2.1]", "u@[192.0.2.1]", nil},
		{"ü@bücher.example", "ü@bücher.example", nil},
		// The attack of the recipient that becomes ESMTP parameters: its
		// last '@' names gw.test, and all before it is one local part.
		{"v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x@gw.test", `"v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x"@gw.test`, nil},
		{`a"b\c@example.com`, `"a\"b\\c"@example.com`, nil},
		{"a b@example.com", `"a b"@example.com`, nil},
		{".u@example.com", `".u"@example.com`, nil},
		{"@example.com", `""@example.com`, nil},
		// A domain that holds the injection cannot be written at all.
		{"s@gw.test> SIZE=1", "", ErrSyntax},
		{"u@example.com.", "", ErrSyntax},
		{"u@", "", ErrSyntax},
		{"u@[300.1.1.1]", "", ErrSyntax},
		{"root", "", ErrNoDomain},
		{"u\x1b[31m@example.com", "", ErrControl},
		{"u@example.com\r", "", ErrControl},
		{"u\x7f@example.com", "", ErrControl},
		{"u\xff@example.com", "", ErrSyntax},
	}
	for _, c := range cases {
		p, err := Path(c.stored)
		if !errors.Is(err, c.err) || p != c.path {
			t.Errorf("Path(%q) = %q, %v; want %q, %v", c.stored, p, err, c.path, c.err)
		}
		if cerr := Check(c.stored); !errors.Is(cerr, c.err) {
			t.Errorf("Check(%q) = %v, want %v", c.stored, cerr, c.err)
		}
	}
}

func TestRoutedQuotedAt(t *testing.T) {
	a, err := ParseRFC5321(`"v@victim.test"@gw.test`)
	if err != nil || a.Local != "v@victim.test" || a.Domain != "gw.test" || !a.Routed() {
		t.Errorf("ParseRFC5321 = %+v, %v; want local v@victim.test, routed", a, err)
	}
	if _, err := Parse(`"v@victim.test"@gw.test`); !errors.Is(err, ErrQuoted) {
		t.Errorf("Parse of a quoted '@' = %v, want ErrQuoted", err)
	}
}

// FuzzPathRoundTrip holds Path to what the next hop parses: a written
// path, put in a MAIL command, ends where Path meant it to (nothing after
// it becomes a parameter), and parses back to exactly the stored local
// part and the stored domain (domains compare without case).
func FuzzPathRoundTrip(f *testing.F) {
	for _, s := range []string{
		"u@example.com", "v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x@gw.test", "s@gw.test> SIZE=1",
		`"a\"b"@c.example`, "a b@c.example", "ü@bücher.example", "u@[IPv6:2001:db8::1]", "postmaster",
		"x\x1b@e.example", "", "#@[]", `\@x.example`, "a>b <c@d.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		p, err := Path(stored)
		if err != nil {
			if Check(stored) == nil {
				t.Fatalf("Check(%q) accepts what Path refuses: %v", stored, err)
			}
			return
		}
		if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("Path(%q) = %q holds a control character", stored, p)
		}
		got, rest, err := splitPath("<"+p+"> SIZE=1", 0)
		if err != nil || got != p || rest != "SIZE=1" {
			t.Fatalf("MAIL FROM:<%s> SIZE=1 splits into %q, %q, %v", p, got, rest, err)
		}
		switch {
		case stored == "" || stored == DoubleBounce:
			if p != stored {
				t.Fatalf("Path(%q) = %q", stored, p)
			}
			return
		case !strings.Contains(stored, "@"):
			if a, err := ParseRFC5321(p); err != nil || !a.Postmaster() {
				t.Fatalf("Path(%q) = %q parses as %+v, %v", stored, p, a, err)
			}
			return
		}
		a, err := ParseRFC5321(p)
		at := strings.LastIndexByte(stored, '@')
		if err != nil || a.Local != stored[:at] || !strings.EqualFold(a.Domain, stored[at+1:]) {
			t.Fatalf("Path(%q) = %q parses back as %+v, %v", stored, p, a, err)
		}
	})
}
