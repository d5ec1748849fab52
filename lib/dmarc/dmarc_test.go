package dmarc

import (
	"context"
	"net/netip"
	"testing"

	"gw/lib/dkim"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
	"gw/lib/spf"
)

func TestOrgDomainAndAlignment(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "example.com", "example.com": "example.com",
		"a.b.example.co.uk": "example.co.uk", "co.uk": "co.uk",
		"x.user.github.io": "user.github.io", "Example.COM.": "example.com",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%s) = %s, want %s", in, got, want)
		}
	}
	cases := []struct {
		auth, from, mode string
		want             bool
	}{
		{"example.com", "example.com", "s", true},
		{"mail.example.com", "example.com", "s", false},
		{"mail.example.com", "example.com", "r", true},
		{"bounce.example.com", "news.example.com", "", true},
		{"example.co.uk", "other.co.uk", "r", false},
		{"a.github.io", "b.github.io", "r", false},
		{"", "example.com", "r", false},
	}
	for _, c := range cases {
		if got := Aligned(c.auth, c.from, c.mode); got != c.want {
			t.Errorf("Aligned(%s, %s, %s) = %v", c.auth, c.from, c.mode, got)
		}
	}
}

// TestEvaluateAgainstLoopbackServer: records served by unbound, results
// of SPF and DKIM as lib/spf and lib/dkim give them.
func TestEvaluateAgainstLoopbackServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		`_dmarc.reject.test. TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reject.test"`,
		`_dmarc.quar.test. TXT "v=DMARC1; p=quarantine; adkim=s; aspf=s"`,
		`_dmarc.none.test. TXT "v=DMARC1; p=none"`,
		`_dmarc.org.test. TXT "v=DMARC1; p=reject; sp=quarantine"`,
		`_dmarc.half.test. TXT "v=DMARC1; p=reject; pct=50"`,
		`_dmarc.bad.test. TXT "v=DMARC1; p=sometimes"`,
		`_dmarc.notdmarc.test. TXT "v=spf1 -all"`,
	)
	srv.Fail("_dmarc.dead.test.")
	e := &Evaluator{Resolver: dns.New(srv.Addr), Sample: func(int) bool { return false }}
	ctx := context.Background()
	spfPass := func(d string) spf.Result { return spf.Result{Domain: d, Value: spf.Pass} }
	spfFail := func(d string) spf.Result { return spf.Result{Domain: d, Value: spf.Fail} }
	sig := func(d, v string) []dkim.Result { return []dkim.Result{{Domain: d, Value: v}} }
	cases := []struct {
		name, from  string
		mailFrom    spf.Result
		sigs        []dkim.Result
		value, pol  string
		spfA, dkimA bool
	}{
		{"spoofed", "reject.test", spfFail("reject.test"), nil, Fail, PolicyReject, false, false},
		{"SPF aligned", "reject.test", spfPass("bounces.reject.test"), nil, Pass, PolicyReject, true, false},
		{"DKIM aligned", "reject.test", spfPass("esp.test"), sig("reject.test", dkim.Pass), Pass, PolicyReject, false, true},
		{"DKIM of another domain", "reject.test", spfPass("esp.test"), sig("esp.test", dkim.Pass), Fail, PolicyReject, false, false},
		{"DKIM failed", "reject.test", spfFail("reject.test"), sig("reject.test", dkim.Fail), Fail, PolicyReject, false, false},
		{"strict DKIM, subdomain", "quar.test", spfFail("x.test"), sig("mail.quar.test", dkim.Pass), Fail, PolicyQuarantine, false, false},
		{"strict SPF, same name", "quar.test", spfPass("quar.test"), nil, Pass, PolicyQuarantine, true, false},
		{"p=none", "none.test", spfFail("none.test"), nil, Fail, PolicyNone, false, false},
		{"subdomain takes sp=", "news.org.test", spfFail("news.org.test"), nil, Fail, PolicyQuarantine, false, false},
		{"org domain itself", "org.test", spfFail("org.test"), nil, Fail, PolicyReject, false, false},
		{"outside pct", "half.test", spfFail("half.test"), nil, Fail, PolicyQuarantine, false, false},
		{"no record", "norecord.test", spfFail("norecord.test"), nil, None, "", false, false},
		{"not a DMARC record", "notdmarc.test", spfFail("x.test"), nil, None, "", false, false},
		{"bad record", "bad.test", spfFail("x.test"), nil, PermError, "", false, false},
		{"DNS down", "dead.test", spfFail("x.test"), nil, TempError, "", false, false},
	}
	for _, c := range cases {
		r := e.Evaluate(ctx, c.from, c.mailFrom, c.sigs)
		if r.Value != c.value || r.Policy != c.pol || r.SPFAligned != c.spfA || r.DKIMAligned != c.dkimA {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
	if r := e.Evaluate(ctx, "reject.test", spfFail("reject.test"), nil); len(r.RUA) != 1 || r.RUA[0] != "mailto:dmarc@reject.test" {
		t.Errorf("rua: %v", r.RUA)
	}
}

func TestDecide(t *testing.T) {
	fw, err := ParseForwarders([]string{"# lists we receive", "192.0.2.0/24", "2001:db8::7", "lists.example.org", ""})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseForwarders([]string{"ok.test", "not a forwarder"}); err == nil {
		t.Error("bad line accepted")
	}
	stranger := netip.MustParseAddr("198.51.100.1")
	reject := Result{Value: Fail, Policy: PolicyReject, From: "reject.test", RecordAt: "reject.test"}
	quar := Result{Value: Fail, Policy: PolicyQuarantine}
	cases := []struct {
		name      string
		r         Result
		e         Enforcement
		client    netip.Addr
		arc, seal string
		want      Action
	}{
		{"reject", reject, Enforce, stranger, "", "", Reject},
		{"quarantine", quar, Enforce, stranger, "", "", Quarantine},
		{"face quarantines only", reject, QuarantineOnly, stranger, "", "", Quarantine},
		{"face reports only", reject, ReportOnly, stranger, "", "", Accept},
		{"forwarder by address", reject, Enforce, netip.MustParseAddr("192.0.2.9"), "", "", Accept},
		{"forwarder by v6 address", reject, Enforce, netip.MustParseAddr("2001:db8::7"), "", "", Accept},
		{"trusted sealer, chain passes", reject, Enforce, stranger, "pass", "Lists.Example.org", Accept},
		{"trusted sealer, chain fails", reject, Enforce, stranger, "fail", "lists.example.org", Reject},
		{"untrusted sealer", reject, Enforce, stranger, "pass", "evil.test", Reject},
		{"pass", Result{Value: Pass, Policy: PolicyReject}, Enforce, stranger, "", "", Accept},
		{"temperror", Result{Value: TempError}, Enforce, stranger, "", "", Accept},
		{"policy none", Result{Value: Fail, Policy: PolicyNone}, Enforce, stranger, "", "", Accept},
	}
	for _, c := range cases {
		if d := Decide(c.r, c.e, fw, c.client, c.arc, c.seal); d.Action != c.want {
			t.Errorf("%s: %+v, want %v", c.name, d, c.want)
		}
	}
}
