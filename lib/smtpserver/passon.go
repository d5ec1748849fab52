package smtpserver

import (
	"strconv"
	"strings"
)

// maxPassedText bounds the text of a reply passed on: RFC 5321 4.5.3.1.5
// allows 512 octets a reply line, CRLF included, and the code and the
// longest enhanced code, with their spaces, take their share of it.
const maxPassedText = 512 - len("250 2.999.999 ") - len("\r\n")

// PassOn is the success reply a proxy gives when the next hop took the
// message: code and text as the next hop answered them, so that the
// client's transcript names the next hop's queue id. text is the reply's
// text as an SMTP client returns it (the enhanced code, if any, in front;
// the lines of a multiline reply joined by LF); only its first line is
// kept. The next hop is not trusted: a code that is not 2yz, a missing or
// foreign enhanced code, a control byte, a non-ASCII byte or an overlong
// text makes PassOn return nil, and the proxy answers in its own words.
func PassOn(code int, text string) *Reply {
	if code < 200 || code > 299 {
		return nil
	}
	line, _, _ := strings.Cut(text, "\n")
	enh, rest, ok := strings.Cut(line, " ")
	if !ok || !enhancedOfClass(enh, '2') || len(rest) == 0 || len(rest) > maxPassedText {
		return nil
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < ' ' || c > '~' {
			return nil
		}
	}
	return &Reply{Code: code, Enhanced: enh, Text: rest}
}

// enhancedOfClass reports whether s is an enhanced status code (RFC 3463:
// class.subject.detail, subject and detail of one to three digits) of the
// class given.
func enhancedOfClass(s string, class byte) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || p[0] != string(class) {
		return false
	}
	for _, n := range p[1:] {
		if len(n) == 0 || len(n) > 3 {
			return false
		}
		if _, err := strconv.ParseUint(n, 10, 16); err != nil {
			return false
		}
	}
	return true
}
