package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// chain makes a CA and a leaf for name signed by it; the leaf expired
// when expired is set.
func chain(t *testing.T, name string, expired bool) (leaf, ca *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	if expired {
		lt.NotBefore, lt.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	}
	der, err = x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return leaf, ca
}

func spki256(c *x509.Certificate) []byte { s := sha256.Sum256(c.RawSubjectPublicKeyInfo); return s[:] }

func TestVerifyDANEEE(t *testing.T) {
	leaf, ca := chain(t, "mx.example", true)
	other, _ := chain(t, "mx.example", false)
	full512 := sha512.Sum512(leaf.Raw)
	for _, c := range []struct {
		name string
		r    Record
		ok   bool
	}{
		{"3 1 1 of the leaf, expired and any name: DANE-EE ignores both", Record{3, 1, 1, spki256(leaf)}, true},
		{"3 0 2 of the leaf", Record{3, 0, 2, full512[:]}, true},
		{"3 0 0 of the leaf", Record{3, 0, 0, leaf.Raw}, true},
		{"3 1 1 of another key", Record{3, 1, 1, spki256(other)}, false},
		{"1 1 1 (PKIX-EE) of the leaf: unusable for SMTP", Record{1, 1, 1, spki256(leaf)}, false},
		{"3 1 1 cut short: unusable", Record{3, 1, 1, spki256(leaf)[:20]}, false},
	} {
		_, err := Verify([]Record{c.r}, []*x509.Certificate{leaf, ca}, []string{"nomatter"}, time.Now())
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestVerifyDANETA(t *testing.T) {
	leaf, ca := chain(t, "mx1.example", false)
	ta := Record{2, 1, 1, spki256(ca)}
	if _, err := Verify([]Record{ta}, []*x509.Certificate{leaf, ca}, []string{"mx1.example", "example"}, time.Now()); err != nil {
		t.Errorf("DANE-TA with the anchor sent and a name that matches: %v", err)
	}
	_, err := Verify([]Record{ta}, []*x509.Certificate{leaf, ca}, []string{"mx2.example"}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "match none") {
		t.Errorf("DANE-TA with the wrong name: %v", err)
	}
	if _, err := Verify([]Record{ta}, []*x509.Certificate{leaf}, []string{"mx1.example"}, time.Now()); !errors.Is(err, ErrNoMatch) {
		t.Errorf("DANE-TA with the anchor not sent: %v", err)
	}
	expired, ca2 := chain(t, "mx1.example", true)
	if _, err := Verify([]Record{{2, 1, 1, spki256(ca2)}}, []*x509.Certificate{expired, ca2}, []string{"mx1.example"}, time.Now()); err == nil {
		t.Errorf("DANE-TA with an expired leaf was taken")
	}
}

func TestMatchName(t *testing.T) {
	for _, c := range []struct {
		cert  string
		names []string
		ok    bool
	}{
		{"mx.example", []string{"mx.example"}, true},
		{"MX.Example.", []string{"mx.example"}, true},
		{"*.example", []string{"mx.example"}, true},
		{"*.example", []string{"a.mx.example"}, false},
		{"mx.example", []string{".example"}, true},
		{"example", []string{".example"}, false},
		{"*.example", []string{".example"}, true},
		{"*.b.example", []string{".example"}, true},
		{"evilexample", []string{".example"}, false},
		{"mx.example.org", []string{"mx.example"}, false},
	} {
		if MatchName(c.cert, c.names) != c.ok {
			t.Errorf("MatchName(%q, %q) = %v", c.cert, c.names, !c.ok)
		}
	}
}
