package acl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxRangeTop is where tcprules clamps the high bound of a numeric range.
const maxRangeTop = 255

// Keys is what one rule address stands for: the literal keys tcprules
// stores for it, or (the extension) one CIDR prefix.
type Keys struct {
	Literal []string     // tcprules keys, in the order tcprules adds them
	Prefix  netip.Prefix // valid only for a CIDR address
	Warning string       // set when the address can never match a client
}

// IsCIDR reports whether the address was a CIDR prefix.
func (k Keys) IsCIDR() bool { return k.Prefix.IsValid() }

// checkAddress returns why addr is refused, or "".
func checkAddress(addr string) string {
	_, err := expandInto(addr, nil, false)
	return err
}

// ExpandAddress returns the keys a rule address stands for, or why the
// address is refused (tcprules refuses a range whose bounds are not
// decimal; gw-tcprules also refuses a CIDR prefix with host bits set).
func ExpandAddress(addr string) (Keys, error) {
	k, reason := expandAddress(addr)
	if reason != "" {
		return Keys{}, fmt.Errorf("%s", reason)
	}
	return k, nil
}

// expandAddress follows tcprules: an address with "=" or "@" is stored
// as written. Otherwise its first "-" makes a range: the low bound is the
// decimal run after the last "." before the "-", the high bound the run
// up to the next "." (either may be empty, meaning 0; the arithmetic wraps
// as C's unsigned long does); the high bound is clamped to 255 and one key
// is stored for each number, so a low bound over the high one stores none.
func expandAddress(addr string) (Keys, string) {
	return expandInto(addr, nil, true)
}

// expandInto is expandAddress with the literal keys appended to lit, and
// without building them (nor the warning) unless build is set.
func expandInto(addr string, lit []string, build bool) (Keys, string) {
	if strings.ContainsAny(addr, "=@") {
		return Keys{Literal: append(lit, addr)}, ""
	}
	if strings.Contains(addr, "/") {
		if p, err := netip.ParsePrefix(addr); err == nil {
			if p.Masked() != p {
				return Keys{}, fmt.Sprintf("CIDR prefix %s has bits set after the first %d: write %s", addr, p.Bits(), p.Masked())
			}
			return Keys{Prefix: p}, ""
		}
	}
	dash := strings.IndexByte(addr, '-')
	if dash < 0 {
		k := Keys{Literal: append(lit, addr)}
		if build && strings.Contains(addr, "/") {
			k.Warning = fmt.Sprintf("%q is not a CIDR prefix; it is kept as a literal key, which no client address matches", addr)
		}
		return k, ""
	}
	left := strings.LastIndexByte(addr[:dash], '.') + 1
	right := len(addr)
	if i := strings.IndexByte(addr[dash+1:], '.'); i >= 0 {
		right = dash + 1 + i
	}
	bot, ok := decimal(addr[left:dash])
	if !ok {
		return Keys{}, fmt.Sprintf("the low bound %q of the range is not a decimal number", addr[left:dash])
	}
	top, ok := decimal(addr[dash+1 : right])
	if !ok {
		return Keys{}, fmt.Sprintf("the high bound %q of the range is not a decimal number", addr[dash+1:right])
	}
	if top > maxRangeTop {
		top = maxRangeTop
	}
	if !build {
		return Keys{}, ""
	}
	k := Keys{Literal: lit}
	if lit == nil {
		k.Literal = []string{}
	}
	for n := bot; n <= top; n++ {
		k.Literal = append(k.Literal, addr[:left]+strconv.FormatUint(n, 10)+addr[right:])
	}
	if len(k.Literal) == 0 {
		k.Warning = fmt.Sprintf("the range in %q is empty (low bound above high bound, which is at most 255)", addr)
	}
	return k, ""
}

// decimal reads s as tcprules' range bounds are read: digits only, the
// empty string is 0, and overflow wraps modulo 2^64.
func decimal(s string) (uint64, bool) {
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
	}
	return n, true
}
