package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a certificate authority made for one test, and the
// certificates it and the tests need, as PEM files in dir:
//
//	ca.pem                    the test CA (gw's control/tlscafile)
//	good.pem, good.key        mx.test, signed by the CA, valid now
//	expired.pem, expired.key  mx.test, self-signed, expired a year ago
//	client.pem, client.key    gw.test, signed by the CA: a client certificate
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: filepath.Join(workDir(t), "pki")}
	os.MkdirAll(p.dir, 0o755)
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey, p.serial = key, 1
	p.write(t, "ca", der, nil)
	p.issue(t, "good", "mx.test", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false, x509.ExtKeyUsageServerAuth)
	p.issue(t, "expired", "mx.test", time.Now().Add(-2*365*24*time.Hour), time.Now().Add(-365*24*time.Hour), true, x509.ExtKeyUsageServerAuth)
	p.issue(t, "client", "gw.test", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false, x509.ExtKeyUsageClientAuth)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue writes name.pem and name.key: a certificate for host (names
// separated by commas), signed by the CA or by itself.
func (p *testPKI) issue(t *testing.T, name, host string, from, to time.Time, self bool, use x509.ExtKeyUsage) {
	t.Helper()
	key := newKey(t)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: strings.Split(host, ",")[0]}, DNSNames: strings.Split(host, ","),
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{use}}
	parent, signer := p.ca, p.caKey
	if self {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	p.write(t, name, der, key)
}

func (p *testPKI) write(t *testing.T, name string, der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	os.WriteFile(p.file(name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if key != nil {
		kb, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p.file(name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	}
}

func (p *testPKI) file(name string) string { return filepath.Join(p.dir, name) }

// startTLSPostfix is the inside Postfix (startInsidePostfix) with
// STARTTLS at level (may, encrypt), presenting the PKI's certificate name; extra main.cf lines
// add to it (a required client certificate).
func startTLSPostfix(t *testing.T, pki *testPKI, name, level string, extra ...string) *insidePostfix {
	return startInsidePostfix(t, append([]string{
		"smtpd_tls_security_level = " + level,
		"smtpd_tls_cert_file = " + pki.file(name+".pem"),
		"smtpd_tls_key_file = " + pki.file(name+".key"),
		"smtpd_tls_loglevel = 1",
	}, extra...)...)
}

// tlsSendInstance is a gw-send instance whose smtproutes sends
// everything to the Postfix at addr, with the tlspolicy lines given
// ("%s" in them is the route's "[127.0.0.1]:port").
func tlsSendInstance(t *testing.T, addr string, control map[string]string, policy ...string) *sendInstance {
	t.Helper()
	dest := "[" + host(addr) + "]:" + port(addr)
	control["smtproutes"] = ":" + dest
	for i := range policy {
		policy[i] = strings.ReplaceAll(policy[i], "%s", dest)
	}
	if len(policy) > 0 {
		control["tlspolicy"] = strings.Join(policy, "\n")
	}
	in := newSendInstance(t, control)
	in.start(t)
	return in
}

// TestSendTLSExpiredSelfSigned: Postfix presents an expired self-signed
// certificate. At level verify gw-send refuses it and defers, logging
// why; nothing reaches the mailbox host. At may (the default) the same
// server gets the mail over TLS, logged as not authenticated.
func TestSendTLSExpiredSelfSigned(t *testing.T) {
	pki := newTestPKI(t)
	pf := startTLSPostfix(t, pki, "expired", "may")

	strict := tlsSendInstance(t, pf.addr, map[string]string{}, "%s verify match=mx.test")
	id := strict.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: verify\n\nbody\n")
	waitFor(t, "the deferral at verify", 20*time.Second, func() bool {
		return len(strict.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	d := strict.lines("delivery", "qid="+id)[0]
	for _, want := range []string{"status=4.7.5", "tls_level=verify", "TLS failed at verify: level verify: certificate not verified"} {
		if !strings.Contains(d, want) {
			t.Errorf("delivery line lacks %q:\n%s", want, d)
		}
	}
	if f := strict.lines("tls_failed", "qid="+id, "stage=verify"); len(f) != 1 || !strings.Contains(f[0], "expired") {
		t.Errorf("tls_failed lines %q, want one at stage verify saying the certificate expired", strict.lines("tls_failed"))
	}
	if l := strict.lines("connect", "qid="+id); len(l) != 1 {
		t.Errorf("connect lines %q: the one failure, never a retry in the clear", l)
	}
	out, _ := qstatRun(t, nil, 0, "--queue", strict.queue, "list")
	if !strings.Contains(out, "TLS failed at verify") || !strings.Contains(out, "4.7.5") {
		t.Errorf("gw-qstat list does not show the TLS failure:\n%s", out)
	}

	lax := tlsSendInstance(t, pf.addr, map[string]string{})
	id2 := lax.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: may\n\nbody\n")
	waitFor(t, "the delivery at may", 20*time.Second, func() bool {
		return len(lax.lines("delivery", "qid="+id2, "result=delivered")) == 1
	})
	d = lax.lines("delivery", "qid="+id2)[0]
	for _, want := range []string{"tls=yes", "tls_version=TLSv1.", "tls_auth=none", "tls_level=may"} {
		if !strings.Contains(d, want) {
			t.Errorf("delivery line lacks %q:\n%s", want, d)
		}
	}
	waitFor(t, "the message through Postfix", 20*time.Second, func() bool { return len(pf.inside.transactions()) == 1 })
	if tx := pf.inside.transactions()[0]; !strings.Contains(tx, "Subject: may") {
		t.Errorf("the mailbox host got %q, want the message sent at may", tx)
	}
	if !strings.Contains(pf.maillog(), "TLS connection established from") {
		t.Errorf("Postfix did not log a TLS connection:\n%s", pf.maillog())
	}
}

// TestSendTLSSecureWithClientCertificate: a smarthost (Postfix) with a
// certificate from the CA gw is told to trust, which requires a client
// certificate. At level secure with gw's client certificate the mail
// goes, logged as verified; without the certificate Postfix refuses the
// client and the mail waits; with a match= the certificate does not
// carry, gw refuses the server and the mail waits.
func TestSendTLSSecureWithClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	pf := startTLSPostfix(t, pki, "good", "encrypt",
		"smtpd_tls_req_ccert = yes",
		"smtpd_tls_CAfile = "+pki.file("ca.pem"))

	with := tlsSendInstance(t, pf.addr, map[string]string{"tlscafile": pki.file("ca.pem")},
		fmt.Sprintf("%%s secure match=mx.test cert=%s key=%s", pki.file("client.pem"), pki.file("client.key")))
	id := with.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: secure\n\nbody\n")
	waitFor(t, "the delivery at secure", 20*time.Second, func() bool {
		return len(with.lines("delivery", "qid="+id, "result=")) == 1
	})
	d := with.lines("delivery", "qid="+id)[0]
	for _, want := range []string{"result=delivered", "tls=yes", "tls_auth=verified", "tls_level=secure"} {
		if !strings.Contains(d, want) {
			t.Errorf("delivery line lacks %q:\n%s", want, d)
		}
	}
	waitFor(t, "the message through Postfix", 20*time.Second, func() bool { return len(pf.inside.transactions()) == 1 })

	without := tlsSendInstance(t, pf.addr, map[string]string{"tlscafile": pki.file("ca.pem")}, "%s secure match=mx.test")
	id2 := without.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: no client cert\n\nbody\n")
	waitFor(t, "the deferral without a client certificate", 20*time.Second, func() bool {
		return len(without.lines("delivery", "qid="+id2, "result=deferred")) == 1
	})
	d = without.lines("delivery", "qid="+id2)[0]
	for _, want := range []string{"421 4.7.1", "No client certificate presented", "(over TLSv1.3 ", ", verified, level secure)", "tls_level=secure"} {
		if !strings.Contains(d, want) {
			t.Errorf("the refusal's line lacks %q (the TLS it came over):\n%s", want, d)
		}
	}

	// The right CA, the wrong name: a certificate for mx.test is not
	// one for smtp.partner.test.
	wrong := tlsSendInstance(t, pf.addr, map[string]string{"tlscafile": pki.file("ca.pem")},
		fmt.Sprintf("%%s secure match=smtp.partner.test cert=%s key=%s", pki.file("client.pem"), pki.file("client.key")))
	id3 := wrong.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: wrong name\n\nbody\n")
	waitFor(t, "the deferral for the wrong name", 20*time.Second, func() bool {
		return len(wrong.lines("delivery", "qid="+id3, "result=deferred")) == 1
	})
	d = wrong.lines("delivery", "qid="+id3)[0]
	for _, want := range []string{"status=4.7.5", "tls_level=secure", "certificate names mx.test match none of smtp.partner.test"} {
		if !strings.Contains(d, want) {
			t.Errorf("the wrong name's line lacks %q:\n%s", want, d)
		}
	}
	if n := len(pf.inside.transactions()); n != 1 {
		t.Errorf("the mailbox host has %d messages, want only the one sent with the client certificate", n)
	}
}

// TestSendTLSEncryptWithoutSTARTTLS: Postfix without TLS offers no
// STARTTLS. At level encrypt the mail defers (4.7.4), never in the clear.
func TestSendTLSEncryptWithoutSTARTTLS(t *testing.T) {
	pf := startInsidePostfix(t)
	in := tlsSendInstance(t, pf.addr, map[string]string{"tlslevel": "encrypt"})
	id := in.inject(t, "a@src.test", []string{"b@gw.test"}, "Subject: encrypt\n\nbody\n")
	waitFor(t, "the deferral at encrypt", 20*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	d := in.lines("delivery", "qid="+id)[0]
	for _, want := range []string{"status=4.7.4", "tls=no", "tls_level=encrypt", "STARTTLS not offered, and level encrypt requires TLS"} {
		if !strings.Contains(d, want) {
			t.Errorf("delivery line lacks %q:\n%s", want, d)
		}
	}
	if f := in.lines("tls_failed", "qid="+id, "stage=starttls"); len(f) != 1 {
		t.Errorf("tls_failed lines %q, want one at stage starttls", in.lines("tls_failed"))
	}
	time.Sleep(time.Second)
	if n := len(pf.inside.transactions()); n != 0 {
		t.Errorf("the mailbox host has %d messages, want none", n)
	}
}
