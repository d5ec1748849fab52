package dane

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"strconv"

	mdns "github.com/miekg/dns"
)

// Exchanger sends a DNS query to the servers it names (lib/dns).
type Exchanger interface {
	Exchange(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error)
	Servers() []string
}

// Resolver asks for TLSA and MX records with DNSSEC, and believes the AD
// bit of the answer only from servers it trusts to have validated it:
// on loopback (the path to them cannot be tampered with), or named in
// Trusted (control/danetrusted). An answer from any other is taken as
// insecure, and DANE does not apply (RFC 7672 2.1.1).
type Resolver struct {
	DNS     Exchanger
	Trusted []netip.Addr
}

// TempError is a failure to learn whether records exist: a SERVFAIL (a
// broken or forged signature looks like this) or no answer. Mail defers
// on it and never downgrades (RFC 7672 2.1.1).
type TempError struct {
	Name string
	Msg  string
}

func (e *TempError) Error() string   { return "DNSSEC lookup of " + e.Name + ": " + e.Msg }
func (e *TempError) Temporary() bool { return true }

// Answer is what DNS said of a name: whether the answer was validated
// (Secure), and the TLSA records at it.
type Answer struct {
	Secure  bool
	Records []Record
}

// trusted reports whether every server the resolver asks may be believed.
func (r *Resolver) trusted() bool {
	servers := r.DNS.Servers()
	if len(servers) == 0 {
		return false
	}
	for _, s := range servers {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			return false
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return false
		}
		ok := a.IsLoopback()
		for _, t := range r.Trusted {
			ok = ok || t == a.Unmap()
		}
		if !ok {
			return false
		}
	}
	return true
}

// query asks for name's records of type qtype with the DO bit (and AD,
// RFC 6840 5.7), and returns the answer and whether it is secure.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, bool, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(1232, true)
	in, err := r.DNS.Exchange(ctx, m)
	if err != nil {
		return nil, false, &TempError{Name: name, Msg: err.Error()}
	}
	switch in.Rcode {
	case mdns.RcodeSuccess, mdns.RcodeNameError:
	default:
		return nil, false, &TempError{Name: name, Msg: "the resolver answered " + mdns.RcodeToString[in.Rcode]}
	}
	return in, in.AuthenticatedData && r.trusted(), nil
}

// TLSA looks up the TLSA records of an SMTP server at host:port
// (_port._tcp.host). An insecure answer carries no records: they could
// be anyone's.
func (r *Resolver) TLSA(ctx context.Context, host string, port int) (Answer, error) {
	name := "_" + strconv.Itoa(port) + "._tcp." + host
	in, secure, err := r.query(ctx, name, mdns.TypeTLSA)
	if err != nil || !secure {
		return Answer{}, err
	}
	a := Answer{Secure: true}
	for _, rr := range in.Answer {
		t, ok := rr.(*mdns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue // unusable
		}
		a.Records = append(a.Records, Record{Usage: t.Usage, Selector: t.Selector, Matching: t.MatchingType, Data: data})
	}
	return a, nil
}

// MXSecure reports whether domain's MX RRset (or its denial) is signed
// and validated: only then do TLSA records of the MX hosts count (RFC
// 7672 2.2.1), as an attacker who can forge the MX can name any host.
func (r *Resolver) MXSecure(ctx context.Context, domain string) (bool, error) {
	_, secure, err := r.query(ctx, domain, mdns.TypeMX)
	return secure, err
}

// AddrSecure reports whether host's address records are signed and
// validated: TLSA records of a host whose address an attacker could
// forge authenticate nothing (RFC 7672 2.2.2), and are not looked up.
func (r *Resolver) AddrSecure(ctx context.Context, host string) (bool, error) {
	_, secure, err := r.query(ctx, host, mdns.TypeA)
	return secure, err
}
