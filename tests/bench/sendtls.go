package main

// Relay over TLS: the relay end to end of send.go, with a private
// Postfix between gw-send and smtp-sink as the receiving MTA, speaking
// STARTTLS with a certificate of a CA made for the run. gw-send relays
// to it at level may and at level verify (the chain checked against the
// CA, the name matched), in the same run: verification must cost little
// (≥ 90 % of may's throughput).

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
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func benchSendTLS(work string) {
	fmt.Printf("\nrelay over TLS: smtp-source → gw → Postfix with STARTTLS → smtp-sink, %dK, %d sessions\n",
		relaySize>>10, relaySessions)
	for _, p := range []string{"smtp-source", "smtp-sink", "postfix"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  %s is not installed (make peers): skipped\n", p)
			return
		}
	}
	check(os.Chmod(work, 0o755))
	dir := filepath.Join(work, "relaytls")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)
	ca, cert, key := benchPKI(dir, "mx.bench.example")
	results := map[string]relayResult{}
	for _, level := range []string{"may", "verify"} {
		results[level] = measureRelay(dir, "gw-"+level, func(sink string) (*side, error) {
			pf, err := startPostfix(filepath.Join(dir, "postfix-"+level), sink,
				"smtpd_tls_security_level = may", "smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key)
			if err != nil {
				return nil, err
			}
			// may is gw-send's default: no policy line
			control := map[string]string{"tlscafile": ca + "\n"}
			if level == "verify" {
				dest := "[" + strings.Replace(pf.addr, ":", "]:", 1)
				control["tlspolicy"] = dest + " verify match=mx.bench.example\n"
			}
			gw, err := startGWControl(filepath.Join(dir, "gw-"+level), pf.addr, control)
			if err != nil {
				pf.stop()
				return nil, err
			}
			return &side{name: gw.name, addr: gw.addr, pids: gw.pids, reap: gw.reap,
				stop: func() { gw.stop(); pf.stop() }}, nil
		})
	}
	fmt.Printf("%-24s %9s %12s %9s %9s\n", "gw-send level", "msg/s", "CPU ms/msg", "p50 ms", "p99 ms")
	for _, level := range []string{"may", "verify"} {
		r := results[level]
		if r.err != nil {
			fmt.Printf("%-24s failed: %v\n", level, r.err)
			continue
		}
		fmt.Printf("%-24s %9.0f %12.3f %9.2f %9.2f\n", level, r.rate, ms(r.cpuPerMsg), ms(r.p50), ms(r.p99))
	}
	if m, v := results["may"], results["verify"]; m.err == nil && v.err == nil {
		verdict := "ok"
		if v.rate < 0.9*m.rate {
			verdict = "BELOW the 90 % aim"
		}
		fmt.Printf("%-24s %8.2fx (%s)\n", "verify / may", v.rate/m.rate, verdict)
	}
}

// benchPKI writes a CA and a certificate for name it signed, and
// returns the files: CA, certificate, key.
func benchPKI(dir, name string) (ca, cert, key string) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	check(err)
	caCert, err := x509.ParseCertificate(caDER)
	check(err)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, lt, caCert, &k.PublicKey, caKey)
	check(err)
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	check(err)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	check(os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))
	check(os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	check(os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	return ca, cert, key
}
