package smtpd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"
)

type fakeAuth struct{}

func (fakeAuth) Check(user, pass string) (bool, error) { return user == "alice" && pass == "pw", nil }

func testTLS(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"gw.example.net"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, SessionTicketsDisabled: true}
}

// TestStartTLS: bytes pipelined after STARTTLS are dropped, the session
// starts afresh after the handshake (no second greeting, HELO again),
// and AUTH is offered and accepted over TLS only.
func TestStartTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	cfg.Auth = fakeAuth{}
	server, client := tcpPair(t)
	done := make(chan struct{})
	go func() { Serve(server, cfg, Client{Injector: &recordingInjector{}}); close(done) }()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	read := func() string {
		var all []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, all)
			}
			all = append(all, strings.TrimRight(l, "\r\n"))
			if len(l) < 4 || l[3] != '-' {
				return strings.Join(all, "|")
			}
		}
	}
	read() // greeting
	client.Write([]byte("EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHB3\r\n"))
	if r := read(); !strings.Contains(r, "STARTTLS") || strings.Contains(r, "AUTH") || !strings.Contains(r, "CHUNKING") {
		t.Errorf("EHLO in plaintext: %q", r)
	}
	if r := read(); !strings.HasPrefix(r, "530 5.7.0 ") {
		t.Errorf("AUTH in plaintext: %q", r)
	}
	client.Write([]byte("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n"))
	if r := read(); !strings.HasPrefix(r, "220 2.0.0 ") {
		t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(tc)
	tc.Write([]byte("MAIL FROM:<a@b.example>\r\nEHLO c.example\r\nAUTH PLAIN AGFsaWNlAHB3\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"))
	if r := read(); !strings.HasPrefix(r, "503 5.5.1 ") {
		t.Errorf("MAIL before EHLO after TLS (a greeting or the injected MAIL's reply?): %q", r)
	}
	if r := read(); strings.Contains(r, "STARTTLS") || !strings.Contains(r, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO over TLS: %q", r)
	}
	for _, want := range []string{"235 ", "250 ", "221 "} {
		if r := read(); !strings.HasPrefix(r, want) {
			t.Errorf("got %q, want %s…", r, want)
		}
	}
	<-done
}
