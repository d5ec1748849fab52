package dkim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rsaCache = map[int]*rsa.PrivateKey{}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	if k := rsaCache[bits]; k != nil {
		return k
	}
	// Go refuses to make keys under 1024 bits unless told it is a test.
	t.Setenv("GODEBUG", "rsa1024min=0")
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaCache[bits] = k
	return k
}

func rsaPublicB64(t *testing.T, bits int) string {
	der, err := x509.MarshalPKIXPublicKey(&rsaKey(t, bits).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func rsaPrivatePEM(t *testing.T, bits int) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey(t, bits))})
}

// TestLoadKeys reads control/dkim/DOMAIN/SELECTOR.key: gw's own PKCS#8
// files and PKCS#1 files as other key tools write them; a broken file is
// named in the error.
func TestLoadKeys(t *testing.T) {
	control := t.TempDir()
	ed, _ := GenerateKey(AlgEd25519)
	edPEM, _ := MarshalKey(ed)
	write := func(domain, name string, b []byte) {
		dir := filepath.Join(control, "dkim", domain)
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("Example.TEST", "ed.key", edPEM)
	write("example.test", "rsa.key", rsaPrivatePEM(t, 2048))
	write("example.test", "rsa.txt", []byte("v=DKIM1; not a key file"))
	keys, err := LoadKeys(control)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(keys["example.test"]); n != 2 {
		t.Fatalf("keys = %v", keys)
	}
	s := NewSigner(keys)
	for _, d := range []string{"example.test", "mail.example.test", "a.b.example.test"} {
		if len(s.KeysFor(d)) != 2 {
			t.Errorf("KeysFor(%s) = %v", d, s.KeysFor(d))
		}
	}
	if k := s.KeysFor("other.test"); k != nil {
		t.Errorf("KeysFor(other.test) = %v", k)
	}
	write("broken.test", "s.key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	if _, err := LoadKeys(control); err == nil || !strings.Contains(err.Error(), "broken.test/s.key") {
		t.Errorf("broken key file: %v", err)
	}
	if keys, err := LoadKeys(t.TempDir()); err != nil || keys != nil {
		t.Errorf("no control/dkim: %v, %v", keys, err)
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct{ header, want string }{
		{"From: Alice <alice@Example.TEST>\r\n", "example.test"},
		{"From: alice@example.test\r\n", "example.test"},
		{"From: a@example.test, b@example.test\r\n", "example.test"},
		{"From: =?x-unknown?q?A?= <a@example.test>\r\n", "example.test"},
		{"From: \"x@evil.test\" <a@example.test>\r\n", "example.test"},
		{"From: a@example.test, b@other.test\r\n", ""},
		{"From: a@example.test\r\nFrom: b@example.test\r\n", ""},
		{"To: b@example.test\r\n", ""},
		{"From: undisclosed\r\n", ""},
	}
	for _, c := range cases {
		fields, _, err := Split([]byte(c.header + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := FromDomain(fields)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%q: %q, %v; want %q", c.header, got, err, c.want)
		}
	}
}

func TestCanonBody(t *testing.T) {
	cases := []struct{ body, relaxed, simple string }{
		{"", "", "\r\n"},
		{"\r\n\r\n", "", "\r\n"},
		{"a  b \t\r\n\r\n", "a b\r\n", "a  b \t\r\n"},
		{"x", "x\r\n", "x\r\n"},
		{" lead\r\n", " lead\r\n", " lead\r\n"},
	}
	for _, c := range cases {
		if got := string(CanonBody("relaxed", []byte(c.body))); got != c.relaxed {
			t.Errorf("relaxed %q = %q, want %q", c.body, got, c.relaxed)
		}
		if got := string(CanonBody("simple", []byte(c.body))); got != c.simple {
			t.Errorf("simple %q = %q, want %q", c.body, got, c.simple)
		}
	}
	if got := RelaxedHeader("Subject :  a \r\n\t b  "); got != "subject:a b\r\n" {
		t.Errorf("RelaxedHeader = %q", got)
	}
	if got := RelaxedHeader("X: a\u00a0b"); got != "x:a\u00a0b\r\n" {
		t.Errorf("RelaxedHeader keeps a no-break space: %q", got)
	}
}
