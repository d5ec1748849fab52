package deliver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"gw/lib/dane"
	"gw/lib/mtasts"
	"gw/lib/tlspolicy"
)

// testChain is a CA and a leaf for name it signed.
func testChain(t *testing.T, name string) (leaf, ca *x509.Certificate) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ct := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, ct, ct, &k.PublicKey, k)
	ca, _ = x509.ParseCertificate(der)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, lt, ca, &lk.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return leaf, ca
}

// TestAuthenticate: what each level makes of one certificate chain.
func TestAuthenticate(t *testing.T) {
	leaf, ca := testChain(t, "mx.example")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cs := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, PeerCertificates: []*x509.Certificate{leaf, ca}}
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	for _, c := range []struct {
		name string
		p    TLSPolicy
		auth string
		err  string
	}{
		{"may, untrusted: reported", TLSPolicy{Level: tlspolicy.May}, "none", ""},
		{"may, trusted", TLSPolicy{Level: tlspolicy.May, Roots: roots}, "verified", ""},
		{"encrypt, untrusted", TLSPolicy{Level: tlspolicy.Encrypt}, "none", ""},
		{"verify, untrusted", TLSPolicy{Level: tlspolicy.Verify, Names: []string{"mx.example"}}, "", "level verify: certificate not verified"},
		{"verify, trusted, name", TLSPolicy{Level: tlspolicy.Verify, Roots: roots, Names: []string{"mx.example"}}, "verified", ""},
		{"secure, trusted, wrong name", TLSPolicy{Level: tlspolicy.Secure, Roots: roots, Names: []string{"example.org", ".example.org"}}, "", "match none of"},
		{"dane-ee match, untrusted", TLSPolicy{Level: tlspolicy.Dane, TLSA: []dane.Record{{Usage: 3, Selector: 1, Matching: 1, Data: spki[:]}}}, "dane", ""},
		{"dane-ee mismatch beats trusted roots", TLSPolicy{Level: tlspolicy.Dane, Roots: roots, TLSA: []dane.Record{{Usage: 3, Selector: 1, Matching: 1, Data: make([]byte, 32)}}}, "", "DANE: no TLSA record matches"},
		{"dane-only without records", TLSPolicy{Level: tlspolicy.DaneOnly, Roots: roots}, "", "no usable DNSSEC-signed TLSA record"},
		{"mta-sts enforce, trusted", TLSPolicy{Level: tlspolicy.May, STS: mtasts.Enforce, Roots: roots, Names: []string{"mx.example"}}, "mta-sts", ""},
		{"mta-sts enforce, untrusted", TLSPolicy{Level: tlspolicy.May, STS: mtasts.Enforce, Names: []string{"mx.example"}}, "", "MTA-STS enforce"},
		{"mta-sts testing, untrusted: delivered", TLSPolicy{Level: tlspolicy.May, STS: mtasts.Testing, Names: []string{"mx.example"}}, "none", ""},
	} {
		st, err := c.p.authenticate(cs, time.Now())
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		case c.err == "" && (err != nil || st.Auth != c.auth):
			t.Errorf("%s: auth %q, %v, want %q", c.name, st.Auth, err, c.auth)
		}
		if err == nil && (st.Version != "TLSv1.3" || st.Cipher != "TLS_AES_128_GCM_SHA256") {
			t.Errorf("%s: state %+v", c.name, st)
		}
	}
	for l, want := range map[tlspolicy.Level]bool{tlspolicy.May: false, tlspolicy.Dane: false, tlspolicy.Encrypt: true, tlspolicy.Verify: true} {
		if (&TLSPolicy{Level: l}).required() != want {
			t.Errorf("%s required: %v", l, !want)
		}
	}
	if !(&TLSPolicy{Level: tlspolicy.Dane, TLSA: []dane.Record{{}}}).required() || !(&TLSPolicy{STS: mtasts.Enforce}).required() {
		t.Errorf("TLSA records or MTA-STS enforce do not require TLS")
	}
}
