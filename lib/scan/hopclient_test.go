package scan

import (
	"bufio"
	"strings"
	"testing"
)

// replyFrom reads one reply from in as the proxy's next-hop client does.
func replyFrom(in string) (code int, enh [3]int, msg string, err error) {
	h := &hopClient{r: bufio.NewReaderSize(strings.NewReader(in), maxHopReplyLine+2)}
	rep, err := h.read()
	if err != nil {
		return 0, enh, "", err
	}
	return rep.Code, rep.EnhancedCode, rep.Message, nil
}

func TestHopReply(t *testing.T) {
	good := []struct {
		in   string
		code int
		enh  [3]int
		msg  string
	}{
		{"250 2.0.0 ok 6619f69a5e55b\r\n", 250, [3]int{2, 0, 0}, "2.0.0 ok 6619f69a5e55b"},
		{"250-gw.example.net\r\n250-PIPELINING\r\n250 DSN\r\n", 250, [3]int{}, "gw.example.net\nPIPELINING\nDSN"},
		{"553 5.7.1 not in rcpthosts\r\n", 553, [3]int{5, 7, 1}, "5.7.1 not in rcpthosts"},
		{"354\r\n", 354, [3]int{}, ""},
		// An enhanced code of another class than the reply's is text.
		{"451 5.0.0 odd\r\n", 451, [3]int{}, "5.0.0 odd"},
	}
	for _, c := range good {
		code, enh, msg, err := replyFrom(c.in)
		if err != nil || code != c.code || enh != c.enh || msg != c.msg {
			t.Errorf("%q: %d %v %q %v, want %d %v %q", c.in, code, enh, msg, err, c.code, c.enh, c.msg)
		}
	}
	bad := []string{
		"",                                 // connection closed
		"250 ok\n",                         // bare LF
		"25 ok\r\n",                        // short code
		"abc ok\r\n",                       // no code
		"199 ok\r\n",                       // no such reply
		"250-a\r\n251 b\r\n",               // codes differ between lines
		"250xok\r\n",                       // neither blank nor hyphen
		"250 a\rb\r\n",                     // a lone CR
		"250-" + strings.Repeat("x", 3000), // a line over the bound
		strings.Repeat("250-x\r\n", maxHopReplyLines) + "250 x\r\n", // too many lines
	}
	for _, in := range bad {
		if code, _, _, err := replyFrom(in); err == nil {
			t.Errorf("%.40q: read as %d, want an error", in, code)
		}
	}
}

// FuzzHopReply: whatever the next hop sends, a reply read is one code
// between 200 and 599 and at most maxHopReplyLines lines of bounded
// length, or an error.
func FuzzHopReply(f *testing.F) {
	for _, s := range []string{"250 2.0.0 ok\r\n", "250-a\r\n250 b\r\n", "554 5.7.1 no\r\n", "354\r\n", "250-x\n", "2\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		code, enh, msg, err := replyFrom(in)
		if err != nil {
			return
		}
		if code < 200 || code > 599 {
			t.Fatalf("%q: code %d", in, code)
		}
		if enh != [3]int{} && enh[0] != code/100 {
			t.Fatalf("%q: enhanced code %v for %d", in, enh, code)
		}
		lines := strings.Split(msg, "\n")
		if len(lines) > maxHopReplyLines {
			t.Fatalf("%q: %d lines", in, len(lines))
		}
		for _, l := range lines {
			if len(l) > maxHopReplyLine || strings.ContainsAny(l, "\r\n") {
				t.Fatalf("%q: line %q", in, l)
			}
		}
	})
}
