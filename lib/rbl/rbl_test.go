package rbl

import (
	"net/netip"
	"reflect"
	"testing"

	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		want  []Zone
	}{
		{"plain", []string{"zen.example"}, []Zone{{Name: "zen.example"}}},
		{"permanent", []string{"-perm.example", " - spaced.example "}, []Zone{{"perm.example", true}, {"spaced.example", true}}},
		{"order kept", []string{"b.example", "a.example"}, []Zone{{Name: "b.example"}, {Name: "a.example"}}},
		{"empty lines and lone dash dropped", []string{"", " ", "-", "- "}, nil},
		{"nothing", nil, nil},
	}
	for _, c := range cases {
		if got := Parse(c.lines); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Parse(%q) = %v, want %v", c.name, c.lines, got, c.want)
		}
	}
}

func TestQuery(t *testing.T) {
	cases := []struct{ ip, zone, want string }{
		{"192.0.2.99", "zen.example", "99.2.0.192.zen.example."},
		{"192.0.2.99", "zen.example.", "99.2.0.192.zen.example."},
		{"::ffff:192.0.2.99", "zen.example", "99.2.0.192.zen.example."},
		{"2001:db8::1", "v6.example", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.example."},
	}
	for _, c := range cases {
		if got := Query(netip.MustParseAddr(c.ip), c.zone); got != c.want {
			t.Errorf("Query(%s, %s) = %s, want %s", c.ip, c.zone, got, c.want)
		}
	}
}

// TestLookup asks a real DNS server on loopback: the first zone that
// lists the client decides, with its TXT text; a failing zone is skipped
// (fail open) and reported; a bad client address is an error.
func TestLookup(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "2.0.0.127.a.example. A 127.0.0.2", `2.0.0.127.a.example. TXT "listed in a"`,
		"2.0.0.127.b.example. A 127.0.0.2", "3.0.0.127.b.example. A 127.0.0.2")
	srv.Fail("2.0.0.127.broken.example.")
	srv.Fail("3.0.0.127.broken.example.")
	res := dns.New(srv.Addr)
	cases := []struct {
		name    string
		zones   []Zone
		ip      string
		listed  string // zone, "" for none
		text    string
		perm    bool
		wantErr bool
	}{
		{"listed with text", []Zone{{Name: "a.example"}}, "127.0.0.2", "a.example", "listed in a", false, false},
		{"first zone decides", []Zone{{Name: "b.example", Permanent: true}, {Name: "a.example"}}, "127.0.0.2", "b.example", "", true, false},
		{"not listed", []Zone{{Name: "a.example"}}, "127.0.0.9", "", "", false, false},
		{"broken zone skipped", []Zone{{Name: "broken.example"}, {Name: "b.example"}}, "127.0.0.3", "b.example", "", false, false},
		{"broken zone only", []Zone{{Name: "broken.example"}}, "127.0.0.3", "", "", false, true},
		{"bad address", []Zone{{Name: "a.example"}}, "127.0.0.2.evil", "", "", false, true},
		{"empty address", []Zone{{Name: "a.example"}}, "", "", "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := (&Checker{Zones: c.zones, Resolver: res}).Lookup(c.ip)
			if (err != nil) != c.wantErr {
				t.Errorf("err = %v, want error %v", err, c.wantErr)
			}
			switch {
			case c.listed == "" && l != nil:
				t.Errorf("listed at %s, want not listed", l.Zone)
			case c.listed != "" && l == nil:
				t.Errorf("not listed, want %s", c.listed)
			case l != nil && (l.Zone != c.listed || l.Text != c.text || l.Permanent != c.perm):
				t.Errorf("listing %+v, want zone %s text %q permanent %v", *l, c.listed, c.text, c.perm)
			}
		})
	}
}
