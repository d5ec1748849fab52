package tests

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// rulesGen writes random tcprules files and random clients from one seed.
// It draws addresses, hosts and ident names from small pools so that the
// probes hit the rules, and writes every address form, quote bytes of
// all kinds, duplicates, and now and then a line tcprules refuses. It
// keeps to djb's language: no address holds a ":" or a "/", since there
// gw-tcprules deliberately reads more (IPv6 lines, CIDR prefixes).
type rulesGen struct {
	r      *rand.Rand
	faulty bool     // this file may hold lines tcprules refuses
	ips    []string // the addresses this file's rules name, for the probes
}

var (
	genNets  = []string{"10", "127", "192", "1", "2"}
	genHosts = []string{"mail.example.com", "example.com", "a.b.example.com", "x.example.net",
		"MIXED.Example.COM", "mixed.example.com", "localhost", "h.test", "trusted.example.net"}
	genInfos = []string{"joe", "bill", "root", "a b", "x=y"}
	genNames = []string{"RELAYCLIENT", "RBLSMTPD", "QMAILQUEUE", "DUP", "DUP", "A", "B",
		"TCPREMOTEHOST", "PROTO", "", "WITH SPACE", "X-Y", "lower"}
	genQuotes = []byte{'"', '"', '"', '\'', '/', 'x', '|', ',', ':', '=', ' ', '\t', '#', '@', '.', '-'}
	genValue  = "abcdefXYZ 0123456789=,:;\"'/@.-_#!\\\t"
)

func (g *rulesGen) pick(s []string) string { return s[g.r.IntN(len(s))] }
func (g *rulesGen) chance(p float64) bool  { return g.r.Float64() < p }

// bad is chance for the choices that make tcprules refuse a line: only
// the faulty files take them, so that most files compile.
func (g *rulesGen) bad(p float64) bool { return g.faulty && g.chance(p) }

func (g *rulesGen) octet() string {
	if g.chance(0.7) {
		return fmt.Sprint(g.r.IntN(4))
	}
	return fmt.Sprint(g.r.IntN(256))
}

// ip returns an address near the pools: a net from genNets, small octets.
func (g *rulesGen) ip() string {
	ip := g.pick(genNets) + "." + g.octet() + "." + g.octet() + "." + g.octet()
	g.ips = append(g.ips, ip)
	return ip
}

// rangeAddr returns an address with a numeric range somewhere, sometimes
// with odd bounds (empty, reversed, above 255, leading zeros, not numeric).
func (g *rulesGen) rangeAddr() string {
	bound := func() string {
		switch g.r.IntN(12) {
		case 0:
			return ""
		case 1:
			return fmt.Sprint(250 + g.r.IntN(100))
		case 2:
			return "00" + fmt.Sprint(g.r.IntN(4))
		case 3:
			return "99999999999999999999"
		case 4:
			if g.bad(1) {
				return "x"
			}
			return "4"
		default:
			return fmt.Sprint(g.r.IntN(6))
		}
	}
	parts := []string{g.pick(genNets), g.octet(), g.octet(), g.octet()}
	n := 1 + g.r.IntN(4) // how many parts are written
	at := g.r.IntN(n)    // which one is the range
	parts[at] = bound() + "-" + bound()
	s := strings.Join(parts[:n], ".")
	if n < 4 && g.chance(0.7) {
		s += "."
	}
	return s
}

func (g *rulesGen) host() string {
	h := g.pick(genHosts)
	if g.chance(0.2) {
		h = "sub." + h
	}
	return h
}

// address returns a rule address of a random form.
func (g *rulesGen) address() string {
	switch g.r.IntN(16) {
	case 0, 1, 2:
		return g.ip()
	case 3, 4:
		ip := strings.Split(g.ip(), ".")
		return strings.Join(ip[:1+g.r.IntN(3)], ".") + "."
	case 5:
		return g.pick(genNets) + "." + g.octet() // no trailing dot: matches nothing useful
	case 6, 7:
		return g.rangeAddr()
	case 8:
		return "=" + g.host()
	case 9:
		h := g.host()
		return "=" + h[max(0, strings.IndexByte(h, '.')):]
	case 10:
		return "="
	case 11:
		return g.pick(genInfos) + "@" + g.ip()
	case 12:
		return g.pick(genInfos) + "@=" + g.host()
	case 13:
		return ""
	case 14:
		return " " + g.ip() // leading blank: a key no client has
	default:
		return g.pick(genInfos) + "@" + g.rangeAddr() // stored literally
	}
}

// assignment returns ",NAME=<q>VALUE<q>", rarely broken; last says
// whether it ends the line, where a blank quote byte would be stripped.
func (g *rulesGen) assignment(last bool) string {
	name := g.pick(genNames)
	q := genQuotes[g.r.IntN(len(genQuotes))]
	if g.chance(0.03) {
		q = byte(1 + g.r.IntN(255)) // any byte but NUL and...
		if q == '\n' {
			q = '"'
		}
	}
	if last && (q == ' ' || q == '\t') && !g.bad(1) {
		q = '"'
	}
	var v strings.Builder
	for n := g.r.IntN(8); n > 0; n-- {
		c := genValue[g.r.IntN(len(genValue))]
		if c == q && !g.bad(0.2) {
			continue // the quote byte ends the value: mostly avoid it
		}
		v.WriteByte(c)
	}
	if g.chance(0.01) {
		v.WriteString("\x00D") // a NUL in a value splits the record item
	}
	switch {
	case g.bad(0.01):
		return "," + name // no "="
	case g.bad(0.01):
		return "," + name + "=" // no value
	case g.bad(0.01):
		return "," + name + "=" + string([]byte{q}) + v.String() // no closing quote
	}
	return "," + name + "=" + string([]byte{q}) + v.String() + string([]byte{q})
}

// line returns one rules line without its "\n".
func (g *rulesGen) line() string {
	switch g.r.IntN(30) {
	case 0:
		return "# comment: " + g.ip() + ":deny"
	case 1:
		return ""
	case 2:
		return " \t "
	case 3:
		return "garbage line without colon"
	case 4:
		return "  # indented " + g.ip() + ":deny"
	}
	var b strings.Builder
	b.WriteString(g.address())
	b.WriteByte(':')
	switch {
	case g.bad(0.01):
		b.WriteString("Allow")
	case g.bad(0.01):
		b.WriteString("denied")
	case g.bad(0.01):
		b.WriteString(" allow")
	case g.chance(0.3):
		b.WriteString("deny")
	default:
		b.WriteString("allow")
	}
	var tail string
	switch {
	case g.bad(0.01):
		tail = ","
	case g.bad(0.01):
		tail = ` X="y"`
	case g.bad(0.01):
		tail = "\r"
	}
	for n := g.r.IntN(4); n > 0; n-- {
		b.WriteString(g.assignment(n == 1 && tail == ""))
	}
	b.WriteString(tail)
	switch {
	case g.chance(0.1):
		b.WriteString([]string{" ", "\t", "  \t "}[g.r.IntN(3)])
	}
	return b.String()
}

// file returns a rules file; one in six may hold refused lines, and a
// third of the files end without "\n".
func (g *rulesGen) file() string {
	g.faulty = g.chance(1.0 / 6)
	g.ips = g.ips[:0]
	var b strings.Builder
	n := 1 + g.r.IntN(40)
	for i := 0; i < n; i++ {
		b.WriteString(g.line())
		if i < n-1 || !g.chance(0.3) {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// rulesProbe is one client for the check programs; "" fields with has* false
// are left out of the environment.
type rulesProbe struct {
	ip, host, info          string
	hasIP, hasHost, hasInfo bool
}

func (p rulesProbe) env() []string {
	var env []string
	if p.hasIP {
		env = append(env, "TCPREMOTEIP="+p.ip)
	}
	if p.hasHost {
		env = append(env, "TCPREMOTEHOST="+p.host)
	}
	if p.hasInfo {
		env = append(env, "TCPREMOTEINFO="+p.info)
	}
	return env
}

func (g *rulesGen) probe() rulesProbe {
	p := rulesProbe{hasIP: !g.chance(0.03), hasHost: g.chance(0.5), hasInfo: g.chance(0.3)}
	switch g.r.IntN(20) {
	case 0:
		p.ip = ""
	case 1:
		p.ip = g.rangeAddr() // a literal range string, as in vector B
	case 2:
		p.ip = g.pick(genNets) + "." + g.octet() + "." // ends in a dot
	case 3:
		p.ip = "2001:db8::" + g.octet() // colons: no djb key holds one
	case 4, 5, 6, 7, 8, 9, 10, 11:
		if len(g.ips) > 0 {
			p.ip = g.pick(g.ips) // one the rules name
			break
		}
		fallthrough
	default:
		p.ip = g.pick(genNets) + "." + g.octet() + "." + g.octet() + "." + g.octet()
	}
	if g.chance(0.05) {
		p.host = ""
	} else {
		p.host = g.host()
	}
	p.info = g.pick(genInfos)
	return p
}
