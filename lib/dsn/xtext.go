package dsn

import "strings"

// DecodeXtext decodes xtext (RFC 3461 4): characters from '!' to '~'
// stand for themselves, except '+' and '=', and "+HH" stands for the
// byte of two hexadecimal digits. The RFC writes the digits in upper
// case; lower case is taken too, as it can mean nothing else.
func DecodeXtext(s string) (string, error) { return decodeXtext(s, false) }

// decodeXtext is DecodeXtext; with utf8 set, bytes from 0x80 up stand
// for themselves as well (RFC 6533's unitext).
func decodeXtext(s string, utf8 bool) (string, error) {
	if strings.IndexByte(s, '+') < 0 && plainXchars(s, utf8) {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !allHex(s[i+1:i+3]) {
				return "", syntax("xtext: '+' not followed by two hexadecimal digits")
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		case isXchar(c) || utf8 && c >= 0x80:
			b = append(b, c)
		default:
			return "", syntax("xtext: byte 0x%02X", c)
		}
	}
	return string(b), nil
}

func plainXchars(s string, utf8 bool) bool {
	for i := 0; i < len(s); i++ {
		if !isXchar(s[i]) && !(utf8 && s[i] >= 0x80) {
			return false
		}
	}
	return true
}

// isXchar reports a byte that xtext writes as itself.
func isXchar(c byte) bool { return c >= '!' && c <= '~' && c != '+' && c != '=' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// EncodeXtext encodes s as xtext, hexadecimal digits in upper case.
func EncodeXtext(s string) string {
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isXchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}
