package tcpserver

import (
	"context"
	"errors"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"

	"gw/lib/dns"
)

// HostLookup finds TCPREMOTEHOST as tcpserver -h does: the name of the
// client's address's PTR record (the first one DNS answers), in lower
// case with the bytes outside [a-z0-9_-] of each label written \ooo
// (octal); with Paranoid (tcpserver -p) only when a forward lookup of that
// name gives the client's address back. No name, a failed lookup or a
// timeout leave TCPREMOTEHOST unset: host rules then do not match, and
// the client falls through to the address rules, as under tcpserver.
type HostLookup struct {
	Resolver *dns.Resolver
	Paranoid bool
	// Timeout bounds the lookups of one connection (PTR and, with
	// Paranoid, the forward lookup); 0 is DefaultHostTimeout. Only the
	// client being looked up waits: every connection is served apart.
	Timeout time.Duration
}

// DefaultHostTimeout is short next to tcpserver's resolver, which may
// try for a minute: a client whose DNS does not answer in 5 s is served
// without a name rather than kept waiting at the greeting.
const DefaultHostTimeout = 5 * time.Second

// Name returns the client's name and whether it has one.
func (h *HostLookup) Name(ip netip.Addr) (string, bool) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHostTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ip = ip.Unmap()
	arpa, err := mdns.ReverseAddr(ip.String())
	if err != nil {
		return "", false
	}
	in, err := h.ask(ctx, arpa, mdns.TypePTR)
	if err != nil {
		return "", false
	}
	var ptr string
	for _, rr := range in.Answer {
		if p, ok := rr.(*mdns.PTR); ok && p.Hdr.Class == mdns.ClassINET {
			ptr = p.Ptr
			break
		}
	}
	if ptr == "" {
		return "", false
	}
	name, ok := dotted(ptr)
	if !ok {
		return "", false
	}
	if h.Paranoid && !h.pointsBack(ctx, ptr, ip) {
		return "", false
	}
	return name, true
}

// pointsBack reports whether name's addresses (A for an IPv4 client,
// AAAA for IPv6) include ip. It always asks DNS, even for a name that
// reads as an address: a PTR record saying "192.0.2.1" proves nothing.
func (h *HostLookup) pointsBack(ctx context.Context, name string, ip netip.Addr) bool {
	qtype := mdns.TypeA
	if ip.Is6() {
		qtype = mdns.TypeAAAA
	}
	in, err := h.ask(ctx, name, qtype)
	if err != nil {
		return false
	}
	for _, rr := range in.Answer {
		var got []byte
		switch a := rr.(type) {
		case *mdns.A:
			got = a.A.To4()
		case *mdns.AAAA:
			got = a.AAAA.To16()
		}
		if addr, ok := netip.AddrFromSlice(got); ok && rr.Header().Class == mdns.ClassINET && addr == ip {
			return true
		}
	}
	return false
}

// ask sends one recursive question; an answer other than NOERROR is an
// error (no name).
func (h *HostLookup) ask(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	in, err := h.Resolver.Exchange(ctx, m)
	if err != nil {
		return nil, err
	}
	if in.Rcode != mdns.RcodeSuccess {
		return nil, errRcode
	}
	return in, nil
}

var errRcode = errors.New("no answer")

// dotted writes a domain name as tcpserver puts it in TCPREMOTEHOST:
// labels joined by dots, no final dot ("." for the root), A-Z lowered,
// and every byte but a-z, 0-9, '-' and '_' as a backslash and three
// octal digits, so that no byte a client's DNS chose reaches the
// environment, the rules lookup or a header unescaped.
func dotted(name string) (string, bool) {
	wire := make([]byte, 256)
	n, err := mdns.PackDomainName(mdns.Fqdn(name), wire, 0, nil, false)
	if err != nil {
		return "", false
	}
	wire = wire[:n]
	if len(wire) == 1 {
		return ".", true
	}
	var b []byte
	for i := 0; wire[i] != 0; {
		l := int(wire[i])
		if len(b) > 0 {
			b = append(b, '.')
		}
		for _, c := range wire[i+1 : i+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				b = append(b, c)
			} else {
				b = append(b, '\\', '0'+c>>6, '0'+c>>3&7, '0'+c&7)
			}
		}
		i += 1 + l
	}
	return string(b), true
}
