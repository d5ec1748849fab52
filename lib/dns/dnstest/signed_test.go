package dnstest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSigned: the validator says AD for the signed zone's records and
// its denials, SERVFAIL for a corrupted record, and no AD for the
// unsigned zone.
func TestSigned(t *testing.T) {
	s := StartSigned(t, Zones{
		Signed: "dane.test.",
		Records: []string{
			"mx.dane.test. IN A 127.0.0.1",
			"_25._tcp.mx.dane.test. IN TLSA 3 1 1 " + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
			"_25._tcp.bad.dane.test. IN TLSA 3 1 1 " + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		},
		Unsigned: "plain.test.",
		Plain:    []string{"mx.plain.test. IN A 127.0.0.1"},
		Corrupt:  []string{"_25._tcp.bad.dane.test."},
	})
	ask := func(name string, qt uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		m.SetEdns0(1232, true)
		c := &dns.Client{Timeout: 5 * time.Second}
		in, _, err := c.Exchange(m, s.Addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return in
	}
	for _, c := range []struct {
		name  string
		qt    uint16
		rcode int
		ad    bool
		n     int
	}{
		{"_25._tcp.mx.dane.test.", dns.TypeTLSA, dns.RcodeSuccess, true, 1},
		{"_25._tcp.none.dane.test.", dns.TypeTLSA, dns.RcodeNameError, true, 0},
		{"mx.dane.test.", dns.TypeTLSA, dns.RcodeSuccess, true, 0},
		{"_25._tcp.bad.dane.test.", dns.TypeTLSA, dns.RcodeServerFailure, false, 0},
		{"mx.plain.test.", dns.TypeA, dns.RcodeSuccess, false, 1},
		{"elsewhere.example.", dns.TypeA, dns.RcodeNameError, false, 0},
	} {
		in := ask(c.name, c.qt)
		var n int
		for _, rr := range in.Answer {
			if rr.Header().Rrtype == c.qt {
				n++
			}
		}
		if in.Rcode != c.rcode || in.AuthenticatedData != c.ad || n != c.n {
			t.Errorf("%s %s: rcode %s AD %v records %d, want %s %v %d", c.name, dns.TypeToString[c.qt],
				dns.RcodeToString[in.Rcode], in.AuthenticatedData, n, dns.RcodeToString[c.rcode], c.ad, c.n)
		}
	}
}
