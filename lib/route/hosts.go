package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"gw/lib/alabel"
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

// Resolver is the part of *net.Resolver that Hosts uses; Hosts calls it
// from several goroutines at once.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// MaxHosts bounds the addresses one delivery tries, whatever DNS says.
const MaxHosts = 16

// Error is a routing failure; Perm says retrying will not help.
type Error struct {
	Perm   bool
	Msg    string
	Status string // the enhanced status code (RFC 3463) a DSN gives it
}

func (e *Error) Error() string { return e.Msg + " (#" + e.Status + ")" }

// Temporary reports whether the failure may go away.
func (e *Error) Temporary() bool { return !e.Perm }

// ErrNullMX is the answer for a domain that publishes a null MX (RFC 7505).
var ErrNullMX = &Error{Perm: true, Msg: "domain does not accept mail (null MX, RFC 7505)", Status: "5.1.10"}

// notFound reports a name or record that does not exist (a final answer).
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Self tells the gateway's own mail hosts from others (lib/ipme).
type Self interface {
	Name(name string) bool
	Addr(ap netip.AddrPort) bool
}

// MaxMX bounds the MX records of one domain whose addresses are looked
// up: all of them are, to find the gateway among them.
const MaxMX = 32

// Hosts lists the addresses to try, in order, for mail to domain along
// route r: the relay's addresses for an artificial route (A/AAAA only, as
// qmail: no MX lookup), else the MX hosts by preference (equal preferences
// in the resolver's shuffled order), else the domain's own addresses.
// A domain written as an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]") is delivered to that address. mxPort is the port
// for SMTP without an explicit port (25 unless control/smtpport says
// otherwise).
//
// MX delivery never reaches the gateway itself (me; nil checks nothing):
// MX hosts at or below the preference of the gateway's own are left out,
// and a domain whose best MX (or whose implicit MX) is the gateway fails
// 5.4.6, as with qmail and Postfix. An artificial route is taken as
// written, as qmail does.
func Hosts(ctx context.Context, res Resolver, domain string, r Route, mxPort int, me Self) ([]Host, error) {
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
			return nil, &Error{Perm: true, Msg: fmt.Sprintf("bad address literal %q", domain), Status: "5.1.2"}
		}
		return []Host{{Name: domain, Addr: a, Port: port}}, nil
	}
	// An SMTPUTF8 domain is stored as the client wrote it; DNS knows it
	// by its A-labels (RFC 6531 3.2).
	a, err := alabel.Domain(domain)
	if err != nil {
		return nil, &Error{Perm: true, Msg: fmt.Sprintf("bad domain %q: %v (#5.1.2)", domain, err)}
	}
	domain = a
	mxs, err := res.LookupMX(ctx, domain)
	if err != nil && !notFound(err) {
		return nil, &Error{Msg: fmt.Sprintf("MX lookup for %s failed: %v", domain, err), Status: "4.4.3"}
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
			return nil, &Error{Perm: true, Msg: fmt.Sprintf("no mail host for %s: no MX and no address", domain), Status: "5.1.2"}
		}
		if err == nil && (isSelf(me, domain, hs) || me != nil && me.Name(domain)) {
			return nil, loopsBack(domain, domain)
		}
		return hs, err
	}
	return mxHosts(ctx, res, domain, mxs, port, me)
}

// mxCand is one MX record with its addresses, or the failure to get them.
type mxCand struct {
	pref  uint16
	name  string
	hosts []Host
	err   error
}

// mxHosts looks up the addresses of every MX record (mxs in preference
// order), leaves out the gateway and what ranks at or below it, and lists
// the addresses of the rest. With none left, a temporary failure of any
// of their look-ups defers the mail: only when every look-up said the
// name has no address is it a permanent failure.
func mxHosts(ctx context.Context, res Resolver, domain string, mxs []*net.MX, port int, me Self) ([]Host, error) {
	if len(mxs) > MaxMX {
		mxs = mxs[:MaxMX]
	}
	// All at once: a delivery waits for the slowest look-up, not for
	// their sum.
	cands := make([]mxCand, len(mxs))
	var wg sync.WaitGroup
	for i, mx := range mxs {
		cands[i] = mxCand{pref: mx.Pref, name: strings.TrimSuffix(mx.Host, ".")}
		wg.Add(1)
		go func(c *mxCand) {
			defer wg.Done()
			c.hosts, c.err = addrHosts(ctx, res, c.name, port, nil)
		}(&cands[i])
	}
	wg.Wait()
	selfPref, self := -1, ""
	for _, c := range cands {
		if me != nil && (me.Name(c.name) || isSelf(me, c.name, c.hosts)) {
			selfPref, self = int(c.pref), c.name
			break
		}
	}
	var hosts []Host
	var temp, perm error
	for _, c := range cands {
		if selfPref >= 0 && int(c.pref) >= selfPref {
			continue
		}
		for _, h := range c.hosts {
			if len(hosts) < MaxHosts {
				hosts = append(hosts, h)
			}
		}
		switch {
		case c.err == nil:
		case Permanent(c.err):
			perm = c.err
		case temp == nil:
			temp = c.err
		}
	}
	switch {
	case len(hosts) > 0:
		return hosts, nil
	case temp != nil:
		return nil, temp
	case perm != nil:
		return nil, perm
	}
	return nil, loopsBack(domain, self)
}

// isSelf reports whether any of hs (the addresses of name) is the
// gateway's.
func isSelf(me Self, name string, hs []Host) bool {
	if me == nil {
		return false
	}
	for _, h := range hs {
		if me.Addr(netip.AddrPortFrom(h.Addr, uint16(h.Port))) {
			return true
		}
	}
	return false
}

// loopsBack is the failure of mail whose best MX is the gateway: it would
// only come back here.
func loopsBack(domain, mx string) error {
	return &Error{Perm: true, Msg: fmt.Sprintf("mail for %s loops back to myself: I am its best MX (%s)", domain, mx), Status: "5.4.6"}
}

// Permanent reports whether err is a routing failure that retrying will
// not mend.
func Permanent(err error) bool {
	var re *Error
	return errors.As(err, &re) && re.Perm
}

// addrHosts appends the addresses of name (IPv6 first, as RFC 6724
// prefers, then IPv4) to hs.
func addrHosts(ctx context.Context, res Resolver, name string, port int, hs []Host) ([]Host, error) {
	addrs, err := res.LookupNetIP(ctx, "ip", name)
	if err != nil {
		if notFound(err) {
			return hs, &Error{Perm: true, Msg: fmt.Sprintf("no address for host %s", name), Status: "5.4.4"}
		}
		return hs, &Error{Msg: fmt.Sprintf("address lookup for %s failed: %v", name, err), Status: "4.4.3"}
	}
	if len(addrs) == 0 {
		return hs, &Error{Perm: true, Msg: fmt.Sprintf("no address for host %s", name), Status: "5.4.4"}
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
