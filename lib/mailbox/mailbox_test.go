package mailbox

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in, want string
		err      error
	}{
		{"u@example.com", "u@example.com", nil},
		{"U.x+tag@Example.COM", "U.x+tag@example.com", nil},
		{"u@example.com.", "u@example.com", nil},
		{"", "", nil},
		{"postmaster", "postmaster", nil},
		{"PostMaster", "postmaster", nil},
		{"root", "", ErrNoDomain},
		{"@a.example,@b.example:u@c.example", "u@c.example", nil},
		{"@a.example:u@c.example", "u@c.example", nil},
		{"@a..example:u@c.example", "", ErrSyntax},
		{`"u"@example.com`, "u@example.com", nil},
		{`"u@evil"@example.com`, "", ErrQuoted},
		{`"a b"@example.com`, "", ErrQuoted},
		{`"a\"b"@example.com`, "", ErrQuoted},
		{`"unterminated@example.com`, "", ErrSyntax},
		{"u@a@b.example", "", ErrSyntax},
		{"u@example.com..", "", ErrSyntax},
		{"u@.example.com", "", ErrSyntax},
		{"u@-a.example", "", ErrSyntax},
		{"u@exa_mple.com", "", ErrSyntax},
		{"u@[192.0.2.1]", "u@[192.0.2.1]", nil},
		{"u@[IPv6:2001:DB8::1]", "u@[ipv6:2001:db8::1]", nil},
		{"u@[IPv6:192.0.2.1]", "", ErrSyntax},
		{"u@[IPv6:fe80::1%eth0]", "", ErrSyntax},
		{"u@[300.0.0.1]", "", ErrSyntax},
		{"u@[192.0.2.1", "", ErrSyntax},
		{"u%evil@example.com", "u%evil@example.com", nil},
		{".u@example.com", "", ErrSyntax},
		{"u..v@example.com", "", ErrSyntax},
		{"u\r@example.com", "", ErrSyntax},
		{"u\x00@example.com", "", ErrSyntax},
		{"ü@example.com", "", ErrNonASCII},
		{strings.Repeat("a", 65) + "@example.com", "", ErrTooLong},
		{"u@" + strings.Repeat("a.", 130) + "com", "", ErrTooLong},
	}
	for _, c := range cases {
		a, err := Parse(c.in)
		if !errors.Is(err, c.err) || err == nil && a.String() != c.want {
			t.Errorf("Parse(%q) = %q, %v; want %q, %v", c.in, a.String(), err, c.want, c.err)
		}
	}
}

func TestParsePath(t *testing.T) {
	cases := []struct{ in, path, rest string }{
		{"<a@b.example>", "a@b.example", ""},
		{" <a@b.example> SIZE=10", "a@b.example", "SIZE=10"},
		{"<>", "", ""},
		{`<"a>b"@c.example> X`, `"a>b"@c.example`, "X"},
		{"a@b.example SIZE=1", "a@b.example", "SIZE=1"},
	}
	for _, c := range cases {
		p, r, err := ParsePath(c.in)
		if err != nil || p != c.path || r != c.rest {
			t.Errorf("ParsePath(%q) = %q, %q, %v; want %q, %q", c.in, p, r, err, c.path, c.rest)
		}
	}
	for _, bad := range []string{"", "<a@b.example", "<a@b.example>SIZE=1", "<" + strings.Repeat("a", 300) + ">"} {
		if _, _, err := ParsePath(bad); err == nil {
			t.Errorf("ParsePath(%q) accepted", bad)
		}
	}
}

// FuzzParse checks that whatever Parse accepts is canonical: printable
// ASCII, one '@' at most, a checked domain, and the same when parsed again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"u@example.com", `"a"@b.example`, "@r.example:u@x.example", "u@[IPv6:::1]", "postmaster", "u@x.example."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := Parse(in)
		if err != nil || a.Null || a.Postmaster() {
			return
		}
		s := a.String()
		if strings.Count(s, "@") != 1 || strings.ContainsAny(s, "\"\r\n\x00 ") {
			t.Fatalf("Parse(%q) = %q: not canonical", in, s)
		}
		b, err := Parse(s)
		if err != nil || b != a {
			t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v, %v", in, a, s, b, err)
		}
	})
}

// TestParseUTF8: with SMTPUTF8, UTF-8 local parts and U-label domains
// are accepted and kept as written; gw-smtpd's other rules stay.
func TestParseUTF8(t *testing.T) {
	cases := []struct {
		in   string
		want string
		err  error
	}{
		{"jürgen@bücher.example", "jürgen@bücher.example", nil},
		{"用户@例子.测试", "用户@例子.测试", nil},
		{"ascii@example.com", "ascii@example.com", nil},
		{"\"a b\"@example.com", "", ErrQuoted},
		{"a@b@c.example", "", ErrSyntax},
		{"x\x01@example.com", "", ErrSyntax},
		{"", "", nil},
		{"Postmaster", "postmaster", nil},
	}
	for _, c := range cases {
		a, err := ParseUTF8(c.in)
		if err != c.err || err == nil && a.String() != c.want {
			t.Errorf("ParseUTF8(%q) = %q, %v; want %q, %v", c.in, a.String(), err, c.want, c.err)
		}
	}
	if _, err := Parse("jürgen@example.com"); err != ErrNonASCII {
		t.Errorf("Parse without SMTPUTF8: %v, want ErrNonASCII", err)
	}
}
