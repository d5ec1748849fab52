package smtpserver

import (
	"strings"
	"testing"
)

func TestPassOn(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want string // the line sent, or "" for nil
	}{
		{250, "2.0.0 ok 6619e111335ab", "250 2.0.0 ok 6619e111335ab"},
		{250, "2.0.0 Ok: queued as 4Xb\n2.0.0 more", "250 2.0.0 Ok: queued as 4Xb"},
		{251, "2.1.5 ok", "251 2.1.5 ok"},
		{250, "ok queued", ""},         // no enhanced code
		{250, "5.0.0 ok", ""},          // an enhanced code of another class
		{250, "2.0 ok", ""},            // not three parts
		{250, "2.0.1234 ok", ""},       // four digits
		{250, "2.0.0 ok\rRCPT", ""},    // a CR
		{250, "2.0.0 ok\x00", ""},      // a NUL
		{250, "2.0.0 caf\xc3\xa9", ""}, // 8-bit
		{250, "2.0.0 ", ""},            // no text
		{354, "2.0.0 go ahead", ""},    // not a success
		{250, "2.0.0 " + strings.Repeat("x", maxPassedText), "250 2.0.0 " + strings.Repeat("x", maxPassedText)},
		{250, "2.0.0 " + strings.Repeat("x", maxPassedText+1), ""},
	} {
		r := PassOn(c.code, c.text)
		got := ""
		if r != nil {
			got = r.Line()
		}
		if got != c.want {
			t.Errorf("PassOn(%d, %q) = %q, want %q", c.code, c.text, got, c.want)
		}
	}
}

// FuzzPassOn: whatever the next hop says, a reply passed on is one line
// of printable ASCII within RFC 5321's 512 octets, and R accepts its codes.
func FuzzPassOn(f *testing.F) {
	f.Add(250, "2.0.0 ok 6619e111335ab")
	f.Add(250, "2.0.0 ok\r\n250 2.0.0 x")
	f.Fuzz(func(t *testing.T, code int, text string) {
		r := PassOn(code, text)
		if r == nil {
			return
		}
		R(r.Code, r.Enhanced, r.Text) // panics on a bad pair
		line := r.Line()
		if len(line)+2 > 512 || strings.ContainsAny(line, "\r\n\x00") || r.Code/100 != 2 {
			t.Fatalf("passed on %q", line)
		}
		for i := 0; i < len(line); i++ {
			if line[i] < ' ' || line[i] > '~' {
				t.Fatalf("byte %#x passed on in %q", line[i], line)
			}
		}
	})
}
