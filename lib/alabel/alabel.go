// Package alabel turns an internationalized domain name into its A-label
// form (RFC 5890: "xn--" and the label's Punycode, RFC 3492), the form
// DNS knows it by. gw stores and compares an SMTPUTF8 address's domain as
// the client wrote it (U-labels) and asks DNS for its A-labels.
//
// The labels are taken as they are: RFC 6531 requires the client to send
// valid U-labels, so no IDNA mapping (case folding beyond ASCII,
// normalization) is done here; an ASCII label is left as it is.
package alabel

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// ErrLabel is a label that has no A-label: invalid UTF-8, or an A-label
// longer than DNS allows.
var ErrLabel = errors.New("domain label cannot be written as an A-label")

// Domain returns d with every non-ASCII label as its A-label.
func Domain(d string) (string, error) {
	ascii := true
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return d, nil
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		a, err := Label(l)
		if err != nil {
			return "", err
		}
		labels[i] = a
	}
	return strings.Join(labels, "."), nil
}

// Label returns one label's A-label ("xn--" and its Punycode), or the
// label itself when it is ASCII.
func Label(l string) (string, error) {
	if !utf8.ValidString(l) {
		return "", ErrLabel
	}
	rs := []rune(l)
	ascii := true
	for _, r := range rs {
		if r >= 0x80 {
			ascii = false
		}
	}
	if ascii {
		return l, nil
	}
	p, ok := punycode(rs)
	if !ok || len(p)+4 > 63 {
		return "", ErrLabel
	}
	return "xn--" + p, nil
}

// RFC 3492's parameters for Punycode.
const (
	base        = 36
	tmin        = 1
	tmax        = 26
	skew        = 38
	damp        = 700
	initialBias = 72
	initialN    = 128
)

// punycode encodes rs (RFC 3492 6.3): the basic code points first, then
// the others as deltas in a generalized variable-length integer.
func punycode(rs []rune) (string, bool) {
	var out []byte
	for _, r := range rs {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	b := len(out)
	h := b
	if b > 0 {
		out = append(out, '-')
	}
	n, delta, bias := rune(initialN), 0, initialBias
	for h < len(rs) {
		m := rune(utf8.MaxRune + 1)
		for _, r := range rs {
			if r >= n && r < m {
				m = r
			}
		}
		if int(m-n) > (1<<30)/(h+1) {
			return "", false // overflow: no label is that long
		}
		delta += int(m-n) * (h + 1)
		n = m
		for _, r := range rs {
			if r < n {
				delta++
			}
			if r != n {
				continue
			}
			q := delta
			for k := base; ; k += base {
				t := k - bias
				if t < tmin {
					t = tmin
				} else if t > tmax {
					t = tmax
				}
				if q < t {
					break
				}
				out = append(out, digit(t+(q-t)%(base-t)))
				q = (q - t) / (base - t)
			}
			out = append(out, digit(q))
			bias = adapt(delta, h+1, h == b)
			delta = 0
			h++
		}
		delta++
		n++
	}
	return string(out), true
}

func adapt(delta, points int, first bool) int {
	if first {
		delta /= damp
	} else {
		delta /= 2
	}
	delta += delta / points
	k := 0
	for delta > ((base-tmin)*tmax)/2 {
		delta /= base - tmin
		k += base
	}
	return k + (base-tmin+1)*delta/(delta+skew)
}

func digit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}
