package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Host is one address to try, with the name it was found under.
type Host struct {
	Name string // MX or relay host name, or the literal
	Addr netip.Addr
	Port int
}

// String is "name[addr]:port", as the logs show it.
func (h Host) String() string {
	return h.Name + "[" + h.Addr.String() + "]:" + strconv.Itoa(h.Port)
}

// Resolver is the part of *net.Resolver that Hosts uses.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// MaxHosts bounds the addresses one delivery tries, whatever DNS says.
const MaxHosts = 16

// Error is a routing failure; Perm says retrying will not help.
type Error struct {
	Perm bool
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Temporary reports whether the failure may go away.
func (e *Error) Temporary() bool { return !e.Perm }

// ErrNullMX is the answer for a domain that publishes a null MX (RFC 7505).
var ErrNullMX = &Error{Perm: true, Msg: "domain does not accept mail (null MX, RFC 7505) (#5.1.10)"}

// notFound reports a name or record that does not exist (a final answer).
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Hosts lists the addresses to try, in order, for mail to domain along
// route r: the relay's addresses for an artificial route (A/AAAA only, as
// qmail: no MX lookup), else the MX hosts by preference (equal preferences
// in the resolver's shuffled order), else the domain's own addresses.
// A domain written as an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]") is delivered to that address. mxPort is the port
// for SMTP without an explicit port (25 unless control/smtpport says
// otherwise).
func Hosts(ctx context.Context, res Resolver, domain string, r Route, mxPort int) ([]Host, error) {
	port := r.Port
	if port == 0 {
		port = r.Proto.DefaultPort()
		if r.Proto == SMTP {
			port = mxPort
		}
	}
	if r.Relay != "" {
		if a, err := netip.ParseAddr(r.Relay); err == nil {
			return []Host{{Name: r.Relay, Addr: a, Port: port}}, nil
		}
		return addrHosts(ctx, res, r.Relay, port, nil)
	}
	if strings.HasPrefix(domain, "[") {
		a, ok := Literal(domain)
		if !ok {
			return nil, &Error{Perm: true, Msg: fmt.Sprintf("bad address literal %q (#5.1.2)", domain)}
		}
		return []Host{{Name: domain, Addr: a, Port: port}}, nil
	}
	mxs, err := res.LookupMX(ctx, domain)
	if err != nil && !notFound(err) {
		return nil, &Error{Msg: fmt.Sprintf("MX lookup for %s failed: %v (#4.4.3)", domain, err)}
	}
	for _, mx := range mxs {
		if mx.Host == "." || mx.Host == "" {
			return nil, ErrNullMX
		}
	}
	if len(mxs) == 0 {
		// RFC 5321 5.1: the implicit MX is the domain itself.
		hs, err := addrHosts(ctx, res, domain, port, nil)
		var re *Error
		if errors.As(err, &re) && re.Perm {
			return nil, &Error{Perm: true, Msg: fmt.Sprintf("no mail host for %s: no MX and no address (#5.1.2)", domain)}
		}
		return hs, err
	}
	var hosts []Host
	var lastErr error
	for _, mx := range mxs {
		hs, err := addrHosts(ctx, res, strings.TrimSuffix(mx.Host, "."), port, hosts)
		if err != nil {
			lastErr = err
			continue
		}
		hosts = hs
		if len(hosts) >= MaxHosts {
			break
		}
	}
	if len(hosts) == 0 {
		return nil, lastErr
	}
	return hosts, nil
}

// addrHosts appends the addresses of name (IPv6 first, as RFC 6724
// prefers, then IPv4) to hs.
func addrHosts(ctx context.Context, res Resolver, name string, port int, hs []Host) ([]Host, error) {
	addrs, err := res.LookupNetIP(ctx, "ip", name)
	if err != nil {
		if notFound(err) {
			return hs, &Error{Perm: true, Msg: fmt.Sprintf("no address for host %s (#5.4.4)", name)}
		}
		return hs, &Error{Msg: fmt.Sprintf("address lookup for %s failed: %v (#4.4.3)", name, err)}
	}
	if len(addrs) == 0 {
		return hs, &Error{Perm: true, Msg: fmt.Sprintf("no address for host %s (#5.4.4)", name)}
	}
	for _, want6 := range []bool{true, false} {
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is6() == want6 && len(hs) < MaxHosts {
				hs = append(hs, Host{Name: name, Addr: a, Port: port})
			}
		}
	}
	return hs, nil
}

// Literal parses a domain written as an address literal: "[192.0.2.1]" or
// "[IPv6:2001:db8::1]" (RFC 5321 4.1.3).
func Literal(domain string) (netip.Addr, bool) {
	if len(domain) < 3 || domain[0] != '[' || domain[len(domain)-1] != ']' {
		return netip.Addr{}, false
	}
	s := domain[1 : len(domain)-1]
	v6 := false
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		s, v6 = s[5:], true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != v6 || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// Domain returns the domain of address addr: what follows its last '@'.
func Domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
