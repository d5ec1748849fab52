package tests

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
)

// spkiSHA256 is the TLSA 3 1 1 data of a PEM certificate file.
func spkiSHA256(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// TestSendDANE: a DNSSEC-signed zone, validated by a loopback unbound
// holding the test's trust anchor, names the MX hosts of six domains,
// all of them one Postfix presenting an expired self-signed certificate.
// At level dane (tlslevel), with dane-only for two:
//
//	good.dane.test    TLSA 3 1 1 of Postfix's key   delivered, tls_auth=dane
//	                                                (DANE-EE: dates and names do not count)
//	bad.dane.test     TLSA 3 1 1 of another key     deferred 4.7.5, never in the clear
//	fail.dane.test    TLSA with a broken signature  deferred: SERVFAIL, no connection
//	none.dane.test    no TLSA, a signed denial      delivered at may, tls_auth=none
//	only.dane.test    no TLSA, dane-only            deferred
//	plain.test        unsigned, TLSA that matches   dane-only: deferred (insecure)
func TestSendDANE(t *testing.T) {
	pki := newTestPKI(t)
	addr := loopbackAddr(t)
	p := port(addr)
	good := spkiSHA256(t, pki.file("expired.pem"))
	other := spkiSHA256(t, pki.file("good.pem"))
	z := dnstest.StartSigned(t, dnstest.Zones{
		Signed: "dane.test.",
		Records: []string{
			"good.dane.test. IN MX 10 mx1.dane.test.", "mx1.dane.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx1.dane.test. IN TLSA 3 1 1 " + good,
			"bad.dane.test. IN MX 10 mx2.dane.test.", "mx2.dane.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx2.dane.test. IN TLSA 3 1 1 " + other,
			"fail.dane.test. IN MX 10 mx3.dane.test.", "mx3.dane.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx3.dane.test. IN TLSA 3 1 1 " + good,
			"none.dane.test. IN MX 10 mx4.dane.test.", "mx4.dane.test. IN A 127.0.0.1",
			"only.dane.test. IN MX 10 mx4.dane.test.",
		},
		Corrupt:  []string{"_" + p + "._tcp.mx3.dane.test."},
		Unsigned: "plain.test.",
		Plain: []string{"plain.test. IN MX 10 mx.plain.test.", "mx.plain.test. IN A 127.0.0.1",
			"_" + p + "._tcp.mx.plain.test. IN TLSA 3 1 1 " + good},
	})
	domains := []string{"good.dane.test", "bad.dane.test", "fail.dane.test", "none.dane.test", "only.dane.test", "plain.test"}
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

	in := newSendInstance(t, map[string]string{"smtpport": p, "dnsserver": z.Addr, "tlslevel": "dane",
		"tlspolicy": "only.dane.test dane-only\nplain.test dane-only"})
	in.start(t)
	ids := map[string]string{}
	for _, d := range domains {
		ids[d] = in.inject(t, "a@src.test", []string{"b@" + d}, "Subject: to "+d+"\n\nbody\n")
	}
	line := func(d string) string {
		var l []string
		waitFor(t, "the delivery to "+d, 30*time.Second, func() bool {
			l = in.lines("delivery", "qid="+ids[d], "result=")
			return len(l) == 1
		})
		return l[0]
	}
	expect := map[string][]string{
		"good.dane.test": {"result=delivered", "tls=yes", "tls_auth=dane", "tls_level=dane"},
		"bad.dane.test":  {"result=deferred", "status=4.7.5", "TLS failed at verify: DANE: no TLSA record matches"},
		"fail.dane.test": {"result=deferred", "status=4.7.5", "tls=no", "SERVFAIL"},
		"none.dane.test": {"result=delivered", "tls=yes", "tls_auth=none", "tls_level=may"},
		"only.dane.test": {"result=deferred", "status=4.7.5", "level dane-only, and the host publishes no TLSA record"},
		"plain.test":     {"result=deferred", "status=4.7.5", "level dane-only, and the MX, the host's address or its TLSA records are not DNSSEC-signed"},
	}
	for _, d := range domains {
		l := line(d)
		for _, want := range expect[d] {
			if !strings.Contains(l, want) {
				t.Errorf("%s: the delivery line lacks %q:\n%s", d, want, l)
			}
		}
	}
	for d, stage := range map[string]string{"bad.dane.test": "verify", "fail.dane.test": "dane", "only.dane.test": "dane", "plain.test": "dane"} {
		if f := in.lines("tls_failed", "qid="+ids[d], "stage="+stage); len(f) != 1 {
			t.Errorf("%s: tls_failed lines %q, want one at stage %s", d, in.lines("tls_failed", "qid="+ids[d]), stage)
		}
	}
	waitFor(t, "the two messages through Postfix", 20*time.Second, func() bool { return len(pf.inside.transactions()) == 2 })
	got := strings.Join(pf.inside.transactions(), "\n")
	for _, want := range []string{"Subject: to good.dane.test", "Subject: to none.dane.test"} {
		if !strings.Contains(got, want) {
			t.Errorf("the mailbox host lacks %q", want)
		}
	}
}
