package route

import (
	"context"
	"errors"
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
			hs, err := Hosts(ctx, res, c.domain, c.route, 2525)
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
			tb.Lookup(k)
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
