package route

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

func TestLookup(t *testing.T) {
	smtp, err := Parse(SMTP, []string{
		"example.com:relay.example.net",
		".sub.example.com:[127.0.0.9]:2525",
		"v6.example:[::1]:26",
		"semi.example:relay.semi;587",
		"except.example:",
		"EXAMPLE.com:ignored.second.entry",
		":smarthost.example:26",
	})
	if err != nil {
		t.Fatal(err)
	}
	qmtp, err := Parse(QMTP, []string{"q.example.com:[127.0.0.5]", ".deep.sub.example.com:qmtp.host"})
	if err != nil {
		t.Fatal(err)
	}
	rs := Routes{nil, qmtp, smtp}
	cases := []struct {
		domain string
		want   Route
	}{
		{"example.com", Route{SMTP, "relay.example.net", 0}},
		{"Example.COM", Route{SMTP, "relay.example.net", 0}},
		{"a.sub.example.com", Route{SMTP, "127.0.0.9", 2525}},
		{"sub.example.com", Route{SMTP, "smarthost.example", 26}},
		{"v6.example", Route{SMTP, "::1", 26}},
		{"semi.example", Route{SMTP, "relay.semi", 587}},
		{"except.example", Route{SMTP, "", 0}},
		{"q.example.com", Route{QMTP, "127.0.0.5", 0}},
		{"x.deep.sub.example.com", Route{QMTP, "qmtp.host", 0}},
		{"other.org", Route{SMTP, "smarthost.example", 26}},
		{"[127.0.0.1]", Route{SMTP, "smarthost.example", 26}},
	}
	for _, c := range cases {
		if got := rs.Lookup(c.domain); got != c.want {
			t.Errorf("Lookup(%q) = %+v, want %+v", c.domain, got, c.want)
		}
	}
	if got := (Routes{}).Lookup("x.org"); got != (Route{Proto: SMTP}) {
		t.Errorf("empty routes: %+v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, line := range []string{
		"no-colon",
		"a.example:[127.0.0.1",
		"a.example:[not-an-ip]",
		"a.example:host:0",
		"a.example:host:99999",
		"a.example:host:port",
		"a.example:[::1]x",
		"a b:host",
		"a.example:ho st",
	} {
		if _, err := Parse(SMTP, []string{line}); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", line)
		}
	}
}

func TestLiteral(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want string
	}{
		{"[127.0.0.1]", true, "127.0.0.1"},
		{"[IPv6:::1]", true, "::1"},
		{"[ipv6:::1]", true, "::1"},
		{"[::1]", false, ""},
		{"[IPv6:127.0.0.1]", false, ""},
		{"127.0.0.1", false, ""},
		{"[]", false, ""},
		{"[IPv6:fe80::1%eth0]", false, ""},
	}
	for _, c := range cases {
		a, ok := Literal(c.in)
		if ok != c.ok || ok && a.String() != c.want {
			t.Errorf("Literal(%q) = %v, %v; want %v, %v", c.in, a, ok, c.want, c.ok)
		}
	}
}

func TestHosts(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"mx.test. MX 10 a.mx.test.",
		"mx.test. MX 20 b.mx.test.",
		"a.mx.test. A 127.0.0.2",
		"b.mx.test. A 127.0.0.3",
		"b.mx.test. AAAA ::1",
		"nomx.test. A 127.0.0.4",
		"null.test. MX 0 .",
		"dangling.test. MX 10 nowhere.test.",
		"relay.test. A 127.0.0.6",
		"xn--bcher-kva.test. MX 10 a.mx.test.",
	)
	srv.Fail("broken.test.")
	res := dns.New(srv.Addr)
	ctx := context.Background()
	cases := []struct {
		name   string
		domain string
		route  Route
		want   []string
		perm   bool // error expected, permanent
		temp   bool // error expected, temporary
	}{
		{"mx order", "mx.test", Route{Proto: SMTP}, []string{"a.mx.test[127.0.0.2]:2525", "b.mx.test[::1]:2525", "b.mx.test[127.0.0.3]:2525"}, false, false},
		{"U-label asked by its A-label", "bücher.test", Route{Proto: SMTP}, []string{"a.mx.test[127.0.0.2]:2525"}, false, false},
		{"implicit mx", "nomx.test", Route{Proto: SMTP}, []string{"nomx.test[127.0.0.4]:2525"}, false, false},
		{"null mx", "null.test", Route{Proto: SMTP}, nil, true, false},
		{"nxdomain", "nothing.test", Route{Proto: SMTP}, nil, true, false},
		{"dangling mx", "dangling.test", Route{Proto: SMTP}, nil, true, false},
		{"servfail", "broken.test", Route{Proto: SMTP}, nil, false, true},
		{"literal", "[127.0.0.7]", Route{Proto: SMTP}, []string{"[127.0.0.7][127.0.0.7]:2525"}, false, false},
		{"bad literal", "[127.0.0]", Route{Proto: SMTP}, nil, true, false},
		{"relay by name", "any.test", Route{SMTP, "relay.test", 26}, []string{"relay.test[127.0.0.6]:26"}, false, false},
		{"relay literal", "any.test", Route{SMTP, "127.0.0.8", 0}, []string{"127.0.0.8[127.0.0.8]:2525"}, false, false},
		{"lmtp port", "any.test", Route{LMTP, "127.0.0.8", 0}, []string{"127.0.0.8[127.0.0.8]:24"}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs, err := Hosts(ctx, res, c.domain, c.route, 2525, nil)
			var re *Error
			if c.perm || c.temp {
				if !errors.As(err, &re) || re.Perm != c.perm {
					t.Fatalf("Hosts(%q) = %v, %v; want perm=%v", c.domain, hs, err, c.perm)
				}
				return
			}
			if err != nil {
				t.Fatalf("Hosts(%q): %v", c.domain, err)
			}
			var got []string
			for _, h := range hs {
				got = append(got, h.String())
			}
			if len(got) != len(c.want) {
				t.Fatalf("Hosts(%q) = %v, want %v", c.domain, got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("Hosts(%q) = %v, want %v", c.domain, got, c.want)
				}
			}
		})
	}
}

// fixedSelf is a gateway known by a name and the addresses it listens on.
type fixedSelf struct {
	name  string
	addrs []string // addr:port
}

func (f fixedSelf) Name(n string) bool { return strings.EqualFold(strings.TrimSuffix(n, "."), f.name) }
func (f fixedSelf) Addr(ap netip.AddrPort) bool {
	for _, a := range f.addrs {
		if netip.MustParseAddrPort(a) == ap {
			return true
		}
	}
	return false
}

// TestHostsSelf: MX hosts at or below the gateway's own preference are
// left out; a domain whose best MX is the gateway fails 5.4.6; a
// temporary DNS failure of any remaining MX host defers when no address
// is left, whatever the other look-ups said.
func TestHostsSelf(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"backup.test. MX 10 a.backup.test.", "backup.test. MX 20 gw.backup.test.", "backup.test. MX 30 c.backup.test.",
		"a.backup.test. A 127.0.0.2", "gw.backup.test. A 127.0.0.9", "c.backup.test. A 127.0.0.3",
		"best.test. MX 10 gw.backup.test.", "best.test. MX 20 a.backup.test.",
		"equal.test. MX 10 a.backup.test.", "equal.test. MX 10 gw.backup.test.",
		"byname.test. MX 10 gw.self.test.", "byname.test. MX 20 a.backup.test.",
		"implicit.test. A 127.0.0.9",
		"dnsfail.test. MX 10 mx1.dnsfail.test.", "dnsfail.test. MX 20 mx2.dnsfail.test.",
		"nxonly.test. MX 10 mx1.nxonly.test.", "nxonly.test. MX 20 mx2.nxonly.test.",
		"failbelow.test. MX 10 mx1.dnsfail.test.", "failbelow.test. MX 20 gw.backup.test.",
		"failworse.test. MX 10 a.backup.test.", "failworse.test. MX 20 mx1.dnsfail.test.",
	)
	srv.Fail("mx1.dnsfail.test.")
	res := dns.New(srv.Addr)
	me := fixedSelf{name: "gw.self.test", addrs: []string{"127.0.0.9:2525"}}
	cases := []struct {
		domain string
		route  Route
		want   []string
		err    string // the failure, when one is expected
		perm   bool
	}{
		{"backup.test", Route{Proto: SMTP}, []string{"a.backup.test[127.0.0.2]:2525"}, "", false},
		{"best.test", Route{Proto: SMTP}, nil, "mail for best.test loops back to myself: I am its best MX (gw.backup.test) (#5.4.6)", true},
		{"equal.test", Route{Proto: SMTP}, nil, "loops back to myself", true},
		{"byname.test", Route{Proto: SMTP}, nil, "loops back to myself: I am its best MX (gw.self.test)", true},
		{"implicit.test", Route{Proto: SMTP}, nil, "mail for implicit.test loops back to myself", true},
		{"dnsfail.test", Route{Proto: SMTP}, nil, "address lookup for mx1.dnsfail.test failed", false},
		{"nxonly.test", Route{Proto: SMTP}, nil, "no address for host mx2.nxonly.test (#5.4.4)", true},
		{"failbelow.test", Route{Proto: SMTP}, nil, "(#4.4.3)", false},
		{"failworse.test", Route{Proto: SMTP}, []string{"a.backup.test[127.0.0.2]:2525"}, "", false},
		// an artificial route is taken as written, as qmail does
		{"any.test", Route{SMTP, "127.0.0.9", 0}, []string{"127.0.0.9[127.0.0.9]:2525"}, "", false},
		// a different port is another server
		{"backup.test", Route{SMTP, "", 26}, []string{"a.backup.test[127.0.0.2]:26", "gw.backup.test[127.0.0.9]:26", "c.backup.test[127.0.0.3]:26"}, "", false},
	}
	for _, c := range cases {
		hs, err := Hosts(context.Background(), res, c.domain, c.route, 2525, me)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || Permanent(err) != c.perm {
				t.Errorf("Hosts(%q) = %v, %v; want a failure with %q, permanent %v", c.domain, hs, err, c.err, c.perm)
			}
			continue
		}
		if err != nil {
			t.Errorf("Hosts(%q): %v", c.domain, err)
			continue
		}
		var got []string
		for _, h := range hs {
			got = append(got, h.String())
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("Hosts(%q, port %d) = %v, want %v", c.domain, c.route.Port, got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"example.com:relay", ":[127.0.0.1]:26", ".x:[::1];25", "a:", "a:b:c:d", "[:]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		tb, err := Parse(SMTP, []string{line})
		if err != nil {
			return
		}
		for k, r := range tb.routes {
			if r.Port < 0 || r.Port > 65535 {
				t.Fatalf("%q: port %d", line, r.Port)
			}
			// a key finds its own route, in whatever spelling it was read
			if got, ok := tb.Lookup(k); !ok || got != r {
				t.Fatalf("%q: Lookup(%q) = %+v, %v; want %+v", line, k, got, ok, r)
			}
			if r.Relay != "" {
				if _, _, err := parseRelay(r.Relay); err != nil && r.Port == 0 {
					// a relay that was bracketed is an address: reparse it bracketed
					if _, _, err := parseRelay("[" + r.Relay + "]"); err != nil {
						t.Fatalf("%q: relay %q does not reparse: %v", line, r.Relay, err)
					}
				}
			}
		}
	})
}

// A route to an internationalized domain takes mail for it however the
// route file and the address spell it: U-labels (an SMTPUTF8 client) or
// A-labels (an older one, or the admin who wrote the file). Before, a
// route in A-labels let a UTF-8 address go out by MX.
func TestLookupIDNEitherSpelling(t *testing.T) {
	smtp, err := Parse(SMTP, []string{
		"xn--mnchen-3ya.de:[127.0.0.7]:2525",
		".köln.de:inside.example",
		"münchen.de:ignored.second.entry",
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := Routes{smtp}
	for _, c := range []struct {
		domain string
		want   Route
	}{
		{"münchen.de", Route{SMTP, "127.0.0.7", 2525}},
		{"MÜNCHEN.de", Route{SMTP, "127.0.0.7", 2525}},
		{"xn--mnchen-3ya.de", Route{SMTP, "127.0.0.7", 2525}},
		{"mail.köln.de", Route{SMTP, "inside.example", 0}},
		{"mail.xn--kln-sna.de", Route{SMTP, "inside.example", 0}},
		{"berlin.de", Route{SMTP, "", 0}},
	} {
		if got := rs.Lookup(c.domain); got != c.want {
			t.Errorf("Lookup(%q) = %+v, want %+v", c.domain, got, c.want)
		}
		if got, _ := smtp.Lookup(c.domain); got != c.want && c.want.Relay != "" {
			t.Errorf("Table.Lookup(%q) = %+v, want %+v", c.domain, got, c.want)
		}
	}
}
