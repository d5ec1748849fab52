package smtpserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"gw/lib/tcpserver"
)

// requireTLSPolicy is testPolicy that remembers MAIL's REQUIRETLS.
type requireTLSPolicy struct {
	testPolicy
	asked []bool
}

func (p *requireTLSPolicy) Mail(s *Session, m *Mail) *Reply {
	p.asked = append(p.asked, m.RequireTLS)
	return p.testPolicy.Mail(s, m)
}

// TestRequireTLSInTheClear: RFC 8689 4.1: no REQUIRETLS in the EHLO
// reply of a plaintext session, and MAIL with it is 530 5.7.10.
func TestRequireTLSInTheClear(t *testing.T) {
	p := &requireTLSPolicy{}
	server, client := pair(t)
	defer client.Close()
	go Serve(server, testConfig(), tcpserver.Client{}, "test", p)
	go func() {
		io.WriteString(client, "EHLO c\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nQUIT\r\n")
		client.CloseWrite()
	}()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(client)
	if strings.Contains(string(all), "REQUIRETLS\r\n") {
		t.Errorf("REQUIRETLS advertised in the clear:\n%s", all)
	}
	if !strings.Contains(string(all), "530 5.7.10 ") {
		t.Errorf("MAIL REQUIRETLS in the clear not refused 530 5.7.10:\n%s", all)
	}
	if len(p.asked) != 0 {
		t.Errorf("the policy saw the refused MAIL: %v", p.asked)
	}
}

// TestRequireTLSOverTLS: on a TLS session REQUIRETLS is advertised and
// MAIL's parameter reaches the policy; given a value it is 501.
func TestRequireTLSOverTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	cfg.ImplicitTLS = true
	p := &requireTLSPolicy{}
	server, raw := pair(t)
	defer raw.Close()
	go Serve(server, cfg, tcpserver.Client{}, "test", p)
	client := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(client, "EHLO c\r\nMAIL FROM:<a@b.example> REQUIRETLS=yes\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nQUIT\r\n")
	var ehlo []string
	var finals []string
	br := bufio.NewReader(client)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		l = strings.TrimRight(l, "\r\n")
		if len(finals) == 1 {
			ehlo = append(ehlo, l[4:])
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		finals = append(finals, l[:3])
	}
	if !contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO over TLS does not offer REQUIRETLS: %q", ehlo)
	}
	if got := strings.Join(finals, ","); got != "220,250,501,250,221" {
		t.Errorf("replies %s, want 220,250,501,250,221", got)
	}
	if len(p.asked) != 1 || !p.asked[0] {
		t.Errorf("policy saw RequireTLS %v, want [true]", p.asked)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.test"}, DNSNames: []string{"gw.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
