package tests

import (
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
)

// TestSendTLSRequiredNo: RFC 8689's "TLS-Required: No" header field asks
// that the recipient's published TLS policies not stop a message. Four
// destinations whose policies refuse their one MX host, a Postfix with
// an expired self-signed certificate, at level dane:
//
//	bad.dane.test   TLSA 3 1 1 of another key (signed zone)
//	fail.dane.test  TLSA whose signature fails: SERVFAIL
//	sts.plain.test  MTA-STS enforce, mx: mail.elsewhere.test (unsigned zone)
//	only.dane.test  no TLSA record, dane-only in control/tlspolicy
//
// To each, a message with the header is delivered over TLS at may (its
// certificate unchecked), with a tls_policy_ignored line saying which
// policy was set aside; one without it is deferred 4.7.5 as before. A
// message with the header that came with REQUIRETLS, which overrules it
// (RFC 8689 4.1), is held to the policy: deferred; so is one to
// pkix.plain.test, at level verify in control/tlspolicy, the site's own
// terms with that peer.
func TestSendTLSRequiredNo(t *testing.T) {
	pki := newTestPKI(t)
	addr := loopbackAddr(t)
	p := port(addr)
	other := spkiSHA256(t, pki.file("good.pem"))
	httpsPort, _ := startPolicyServer(t, pki, map[string]string{
		"sts.plain.test": "version: STSv1\nmode: enforce\nmx: mail.elsewhere.test\nmax_age: 86400\n",
	})
	t.Setenv("GW_MTASTS_PORT", httpsPort)
	z := dnstest.StartSigned(t, dnstest.Zones{
		Signed: "dane.test.",
		Records: []string{
			"bad.dane.test. IN MX 10 mx2.dane.test.", "mx2.dane.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx2.dane.test. IN TLSA 3 1 1 " + other,
			"fail.dane.test. IN MX 10 mx3.dane.test.", "mx3.dane.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx3.dane.test. IN TLSA 3 1 1 " + other,
			"only.dane.test. IN MX 10 mx4.dane.test.", "mx4.dane.test. IN A 127.0.0.1",
		},
		Corrupt:  []string{"_" + p + "._tcp.mx3.dane.test."},
		Unsigned: "plain.test.",
		Plain: []string{"sts.plain.test. IN MX 10 mx.plain.test.", "mx.plain.test. IN A 127.0.0.1",
			`_mta-sts.sts.plain.test. IN TXT "v=STSv1; id=20261202"`, "mta-sts.sts.plain.test. IN A 127.0.0.1",
			"pkix.plain.test. IN MX 10 mx.plain.test."},
	})
	domains := []string{"bad.dane.test", "fail.dane.test", "sts.plain.test", "only.dane.test"}
	var alias []string
	for _, d := range domains {
		alias = append(alias, "@"+d+"=b@gw.test")
	}
	pf := startInsidePostfixAt(t, addr,
		"smtpd_tls_security_level = may",
		"smtpd_tls_cert_file = "+pki.file("expired.pem"),
		"smtpd_tls_key_file = "+pki.file("expired.key"),
		"virtual_alias_domains = "+strings.Join(domains, ", "),
		"virtual_alias_maps = inline:{ "+strings.Join(alias, ", ")+" }")
	in := newSendInstance(t, map[string]string{"smtpport": p, "dnsserver": z.Addr, "tlslevel": "dane", "tlscafile": pki.file("ca.pem"),
		"tlspolicy": "only.dane.test dane-only\npkix.plain.test verify"})
	in.start(t)

	optional, strict := map[string]string{}, map[string]string{}
	for _, d := range domains {
		optional[d] = in.inject(t, "a@src.test", []string{"b@" + d}, "Subject: optional to "+d+"\nTLS-Required: No\n\nbody\n")
		strict[d] = in.inject(t, "a@src.test", []string{"b@" + d}, "Subject: strict to "+d+"\n\nbody\n")
	}
	pkix := in.inject(t, "a@src.test", []string{"b@pkix.plain.test"}, "Subject: verify\nTLS-Required: No\n\nbody\n")
	overruled := in.injectRequireTLS(t, "a@src.test", "b@bad.dane.test", "Subject: overruled\nTLS-Required: No\n\nbody\n")

	result := func(id string) string {
		var l []string
		waitFor(t, "the delivery line of "+id, 30*time.Second, func() bool {
			l = in.lines("delivery", "qid="+id, "result=")
			return len(l) > 0
		})
		return l[0]
	}
	setAside := map[string]string{
		"bad.dane.test":  "policy=\"dane (1 usable TLSA records)\"",
		"fail.dane.test": "SERVFAIL",
		"sts.plain.test": "policy=\"mta-sts (mode enforce, mx mail.elsewhere.test does not match)\"",
		"only.dane.test": "level dane-only, and the host publishes no TLSA record",
	}
	for _, d := range domains {
		l := result(optional[d])
		for _, want := range []string{"result=delivered", "tls=yes", "tls_auth=none", "tls_level=may"} {
			if !strings.Contains(l, want) {
				t.Errorf("%s with TLS-Required: No: the delivery line lacks %q:\n%s", d, want, l)
			}
		}
		ign := in.lines("tls_policy_ignored", "qid="+optional[d])
		if len(ign) == 0 || !strings.Contains(ign[0], setAside[d]) || !strings.Contains(ign[0], `header="TLS-Required: No"`) {
			t.Errorf("%s: tls_policy_ignored lines %q, want one with %q", d, ign, setAside[d])
		} else {
			t.Logf("%s\n%s", ign[0], l)
		}
		l = result(strict[d])
		for _, want := range []string{"result=deferred", "status=4.7.5"} {
			if !strings.Contains(l, want) {
				t.Errorf("%s without the header: the delivery line lacks %q:\n%s", d, want, l)
			}
		}
		if ign := in.lines("tls_policy_ignored", "qid="+strict[d]); len(ign) != 0 {
			t.Errorf("%s without the header: policy set aside: %q", d, ign)
		}
	}
	if l := result(overruled); !strings.Contains(l, "result=deferred") || !strings.Contains(l, "status=4.7.5") {
		t.Errorf("REQUIRETLS with TLS-Required: No: %s, want deferred by the DANE policy", l)
	}
	if l := result(pkix); !strings.Contains(l, "result=deferred") || !strings.Contains(l, "status=4.7.5") || !strings.Contains(l, "tls_level=verify") {
		t.Errorf("level verify with TLS-Required: No: %s, want deferred by the site's own policy", l)
	}
	for _, id := range []string{overruled, pkix} {
		if ign := in.lines("tls_policy_ignored", "qid="+id); len(ign) != 0 {
			t.Errorf("a policy the header does not touch was set aside: %q", ign)
		}
	}
	// (each whole: the body is its last line)
	waitFor(t, "the four optional messages through Postfix", 20*time.Second, func() bool {
		txs := pf.inside.transactions()
		for _, tx := range txs {
			if !strings.Contains(tx, "\n\nbody\n") {
				return false
			}
		}
		return len(txs) == 4
	})
	for _, tx := range pf.inside.transactions() {
		if !strings.Contains(tx, "Subject: optional to ") {
			t.Errorf("Postfix passed on a message that was not to go:\n%s", tx)
		}
	}
}
