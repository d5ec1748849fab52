// Package dkimpytest runs dkimpy (Debian's python3-dkim) for gw's tests,
// as the independent DKIM and ARC implementation gw's signatures, seals
// and verdicts are checked against. Its DNS queries go to the test's
// unbound on loopback (lib/dns/dnstest).
package dkimpytest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

//go:embed dkimpy.py
var script []byte

// python is Debian's interpreter, which has python3-dkim; a python3
// earlier in PATH (a virtualenv, pyenv) may not.
const python = "/usr/bin/python3"

// Run runs the script's command with msg on stdin and the DNS server
// dnsAddr, and returns its output; a failure to run fails the test.
func Run(t testing.TB, dnsAddr string, msg []byte, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dkimpy.py")
	if err := os.WriteFile(path, script, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "GW_DNS="+dnsAddr)
	cmd.Stdin = bytes.NewReader(msg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("dkimpy %s: %v\n%s%s (python3-dkim is installed by scripts/test-peers.sh)", args[0], err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// KeyFile writes key in the form dkimpy reads (PKCS#1 PEM for RSA, the
// base64 seed for Ed25519) and returns its path.
func KeyFile(t testing.TB, key crypto.Signer) string {
	t.Helper()
	var b []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		b = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case ed25519.PrivateKey:
		b = []byte(base64.StdEncoding.EncodeToString(k.Seed()))
	default:
		t.Fatalf("key of type %T", key)
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TXT is a zone-file TXT record for name holding text, cut into strings
// of at most 255 bytes as DNS requires (an RSA-2048 key record is longer).
func TXT(name, text string) string {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, `"`+text[:255]+`"`)
		text = text[255:]
	}
	parts = append(parts, `"`+text+`"`)
	return name + ". TXT " + strings.Join(parts, " ")
}
