package send

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gw/lib/alabel"
	"gw/lib/dns"
	"gw/lib/route"
	"gw/lib/tlspolicy"
)

// Explanation is where mail to one address would go from this queue, as
// gw-send --explain prints it: the route the control files give, what DNS
// says of the domain, the addresses a delivery would try in order, and
// whether it would ask for STARTTLS. Nothing is sent anywhere but to the
// DNS server.
type Explanation struct {
	Address, Domain string
	Route           route.Route
	MX              []MX         // the domain's MX records, by preference; MX delivery only
	MXErr           error        // the MX lookup's failure
	Hosts           []route.Host // what a delivery would try, in order
	HostsErr        error        // why a delivery would have nowhere to go
	TLS             string
	smtpPort        int // control/smtpport: SMTP's port where a route names none
}

// MX is one MX record and its addresses.
type MX struct {
	Pref  uint16
	Name  string
	Addrs []netip.Addr
	Err   error
}

// Resolver returns the resolver gw-send uses with c: control/dnsserver,
// else GW_DNS, else the system's.
func (c *Config) Resolver() *dns.Resolver {
	if c.DNSServer != "" {
		return dns.New(c.DNSServer)
	}
	return dns.FromEnv()
}

// Explain works out where mail to addr would go, as a delivery would,
// through the same route tables and the same choice of hosts.
func Explain(ctx context.Context, c *Config, res route.Resolver, addr string) *Explanation {
	e := &Explanation{Address: addr, Domain: route.Domain(addr), smtpPort: c.SMTPPort}
	e.Route = c.Routes.Lookup(e.Domain)
	if e.Route.Relay == "" && !strings.HasPrefix(e.Domain, "[") {
		mxs, err := res.LookupMX(ctx, e.Domain)
		if err != nil && !dns.NotFound(err) {
			e.MXErr = err
		}
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
		for _, m := range mxs {
			x := MX{Pref: m.Pref, Name: strings.TrimSuffix(m.Host, ".")}
			if x.Name != "" {
				x.Addrs, x.Err = res.LookupNetIP(ctx, "ip", x.Name)
			}
			e.MX = append(e.MX, x)
		}
	}
	e.Hosts, e.HostsErr = route.Hosts(ctx, res, e.Domain, e.Route, c.SMTPPort, c.Self)
	e.TLS = tlsText(c, e)
	return e
}

// tlsText says what a delivery would make of TLS, as newTLSPolicies
// decides it: no TLS for QMTP and LMTP, else the tlspolicy line for the
// destination, else the default level.
func tlsText(c *Config, e *Explanation) string {
	if e.Route.Proto != route.SMTP {
		return "none: " + strings.ToUpper(string(e.Route.Proto)) + " has no STARTTLS"
	}
	if c.TLSPolicy == nil {
		if c.TLS {
			return "may (control/tlsremote 1)"
		}
		return "none (control/tlsremote 0)"
	}
	port := e.Route.Port
	if port == 0 {
		port = c.SMTPPort
	}
	en := c.TLSPolicy.Lookup(e.Domain, e.Route.Relay, port)
	if en.Dest == "" {
		text := en.Level.String() + " (control/tlslevel or its default: no tlspolicy line names " + e.Domain + ")"
		if (en.Level == tlspolicy.May || en.Level == tlspolicy.Dane) && e.Route.Relay == "" {
			text += "; the domain's MTA-STS policy, if it has one, is asked at delivery"
		}
		return text
	}
	text := fmt.Sprintf("%s (control/tlspolicy line %d: %s)", en.Level, en.Line, en.Dest)
	if len(en.Match) > 0 {
		text += "; names " + strings.Join(en.Match, " ")
	}
	if en.CertFile != "" {
		text += "; client certificate " + en.CertFile
	}
	return text
}

// Write prints the explanation, one "key: value" line each:
//
//	address: bob@example.net
//	domain: example.net
//	route: MX over SMTP
//	mx: 10 mx1.example.net 192.0.2.1 2001:db8::1
//	mx: 20 mx2.example.net 192.0.2.2
//	try: mx1.example.net[192.0.2.1]:25
//	try: mx1.example.net[2001:db8::1]:25
//	try: mx2.example.net[192.0.2.2]:25
//	tls: STARTTLS when the host offers it, …
//
// Names and texts from DNS are printed with control characters and
// invalid UTF-8 as '_'; an IDN domain is followed by its A-labels.
func (e *Explanation) Write(w io.Writer) error {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + printable(v) + "\n") }
	line("address", e.Address)
	domain := e.Domain
	if a, err := alabel.Domain(e.Domain); err == nil && a != e.Domain {
		domain += " (in DNS " + a + ")"
	}
	line("domain", domain)
	line("route", e.routeText())
	if e.MXErr != nil {
		line("mx", "lookup failed: "+e.MXErr.Error())
	}
	for _, m := range e.MX {
		v := strconv.Itoa(int(m.Pref)) + " " + m.Name
		if m.Name == "" {
			v += ". (null MX: the domain takes no mail)"
		}
		for _, a := range m.Addrs {
			v += " " + a.String()
		}
		if m.Err != nil {
			v += " (no address: " + m.Err.Error() + ")"
		}
		line("mx", v)
	}
	for _, h := range e.Hosts {
		line("try", h.String())
	}
	if e.HostsErr != nil {
		line("fails", e.HostsErr.Error())
	}
	line("tls", e.TLS)
	_, err := io.WriteString(w, b.String())
	return err
}

func (e *Explanation) routeText() string {
	r := e.Route
	proto := strings.ToUpper(string(r.Proto))
	if r.Relay == "" {
		if strings.HasPrefix(e.Domain, "[") {
			return "the address literal, over " + proto
		}
		if r.Proto == route.SMTP {
			return "MX over SMTP (no relay in smtproutes, qmtproutes or lmtproutes)"
		}
		return fmt.Sprintf("MX over %s (%sroutes)", proto, r.Proto)
	}
	port := r.Port
	if port == 0 {
		port = r.Proto.DefaultPort()
		if r.Proto == route.SMTP {
			port = e.smtpPort
		}
	}
	return fmt.Sprintf("%s port %d over %s (%sroutes; no MX lookup)", r.Relay, port, proto, r.Proto)
}

// printable replaces control characters and invalid UTF-8 with '_': DNS
// names and error texts come from the network. A printable character
// beyond ASCII stays: an SMTPUTF8 address's domain (U-labels) is shown as
// the admin typed it, not as a '_' a byte.
func printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError && len(s[i:]) > 0 {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				b.WriteByte('_')
				continue
			}
		}
		if !unicode.IsPrint(r) {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
