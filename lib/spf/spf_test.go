package spf

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

// TestCheckAgainstLoopbackServer evaluates records served by unbound on
// loopback: each case is a domain with its record and what a client at
// 192.0.2.10 gets for it.
func TestCheckAgainstLoopbackServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		`pass.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`fail.test. TXT "v=spf1 ip4:198.51.100.1 -all"`,
		`soft.test. TXT "v=spf1 ~all"`,
		`neutral.test. TXT "v=spf1 ?all"`,
		`viamx.test. TXT "v=spf1 mx -all"`, `viamx.test. MX 10 mx.viamx.test.`, `mx.viamx.test. A 192.0.2.10`,
		`viainclude.test. TXT "v=spf1 include:pass.test -all"`,
		`broken.test. TXT "v=spf1 ip4:not-an-address -all"`,
		`two.test. TXT "v=spf1 -all"`, `two.test. TXT "v=spf1 +all"`,
		`helo.test. TXT "v=spf1 a -all"`, `helo.test. A 192.0.2.10`,
		`includesdead.test. TXT "v=spf1 include:dead.test -all"`,
	)
	// 11 terms that query DNS: one too many (RFC 7208 §4.6.4).
	var terms []string
	for i := 1; i <= 11; i++ {
		terms = append(terms, fmt.Sprintf("a:h%d.toomany.test", i))
		srv.Add(t, fmt.Sprintf("h%d.toomany.test. A 198.51.100.%d", i, i))
	}
	srv.Add(t, `toomany.test. TXT "v=spf1 `+strings.Join(terms, " ")+` ip4:192.0.2.10 -all"`)
	// 10 are allowed.
	srv.Add(t, `tenterms.test. TXT "v=spf1 `+strings.Join(terms[:10], " ")+` ip4:192.0.2.10 -all"`)
	// three names that do not exist: one void lookup too many.
	srv.Add(t, `voids.test. TXT "v=spf1 a:v1.nowhere.test a:v2.nowhere.test a:v3.nowhere.test ip4:192.0.2.10 -all"`)
	srv.Add(t, `twovoids.test. TXT "v=spf1 a:v1.nowhere.test a:v2.nowhere.test ip4:192.0.2.10 -all"`)
	srv.Fail("dead.test.")

	c := New(dns.New(srv.Addr))
	ip := net.ParseIP("192.0.2.10")
	ctx := context.Background()
	cases := []struct{ sender, want string }{
		{"a@pass.test", Pass},
		{"a@fail.test", Fail},
		{"a@soft.test", SoftFail},
		{"a@neutral.test", Neutral},
		{"a@viamx.test", Pass},
		{"a@viainclude.test", Pass},
		{"a@norecord.test", None},
		{"a@broken.test", PermError},
		{"a@two.test", PermError},
		{"a@toomany.test", PermError},
		{"a@tenterms.test", Pass},
		{"a@voids.test", PermError},
		{"a@twovoids.test", Pass},
		{"a@dead.test", TempError},
		{"a@includesdead.test", TempError},
		{"\"odd@local\"@pass.test", Pass},
	}
	for _, cs := range cases {
		r := c.MailFrom(ctx, ip, "helo.test", cs.sender)
		if r.Value != cs.want || r.Identity != IdentityMailFrom {
			t.Errorf("MAIL FROM %s: %+v, want %s", cs.sender, r, cs.want)
		}
	}
	// The null sender is postmaster@HELO.
	if r := c.MailFrom(ctx, ip, "fail.test", ""); r.Value != Fail || r.Sender != "postmaster@fail.test" || r.Domain != "fail.test" {
		t.Errorf("null sender: %+v", r)
	}
	if r := c.Helo(ctx, ip, "helo.test"); r.Value != Pass || r.Identity != IdentityHelo {
		t.Errorf("HELO helo.test: %+v", r)
	}
	if r := c.Helo(ctx, net.ParseIP("198.51.100.7"), "helo.test"); r.Value != Fail {
		t.Errorf("HELO helo.test from elsewhere: %+v", r)
	}
	for _, helo := range []string{"[192.0.2.10]", "localhost", "", "bad..name"} {
		if r := c.Helo(ctx, ip, helo); r.Value != None || r.Domain != "" {
			t.Errorf("HELO %q: %+v, want none unchecked", helo, r)
		}
	}
	if r := c.MailFrom(ctx, ip, "helo.test", "nodomain"); r.Value != None {
		t.Errorf("sender without domain: %+v", r)
	}
}

func TestPolicy(t *testing.T) {
	for _, s := range []string{"none", "tag", "refuse", " Refuse\n", ""} {
		if _, err := ParsePolicy(s); err != nil {
			t.Errorf("ParsePolicy(%q): %v", s, err)
		}
	}
	if _, err := ParsePolicy("reject"); err == nil {
		t.Error("ParsePolicy(reject): no error")
	}
	fail := Result{Identity: IdentityMailFrom, Domain: "fail.test", Sender: "a@fail.test", Value: Fail}
	if r := PolicyRefuse.Refusal(fail); r == nil || r.Code != 550 || r.Enhanced != "5.7.23" {
		t.Errorf("refuse on fail: %+v", r)
	}
	for _, v := range []string{SoftFail, TempError, PermError, Neutral, None, Pass} {
		if r := PolicyRefuse.Refusal(Result{Value: v}); r != nil {
			t.Errorf("refuse on %s: %+v, want none", v, r)
		}
	}
	if r := PolicyTag.Refusal(fail); r != nil {
		t.Errorf("tag on fail refused: %+v", r)
	}
}
