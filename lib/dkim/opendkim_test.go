package dkim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

// OpenDKIM (Debian opendkim, opendkim-tools; scripts/test-peers.sh) is the
// second independent implementation gw is checked against. Its test mode
// (opendkim -t FILE) runs the filter's own verifying and signing code on
// a file, without a mail server around it: in verifying mode it prints
// whether the first signature verified, in signing mode the signature it
// would add.

// opendkimPath finds the filter, failing the test when it is missing.
func opendkimPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/opendkim", "/usr/bin/opendkim"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("opendkim is not installed (Debian package opendkim): run scripts/test-peers.sh")
	return ""
}

// opendkimTest writes conf and msg to files and runs opendkim's test mode
// on them, returning what it printed (it prints to both streams).
func opendkimTest(t *testing.T, conf string, msg []byte) string {
	t.Helper()
	dir := t.TempDir()
	confPath, msgPath := filepath.Join(dir, "opendkim.conf"), filepath.Join(dir, "msg.eml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msgPath, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(opendkimPath(t), "-x", confPath, "-t", msgPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("opendkim -t: %v\n%s", err, out)
	}
	return string(out)
}

// opendkimVerify is OpenDKIM's verdict on msg's first signature, its keys
// fetched from the test's unbound. Debian's opendkim resolves through
// libunbound, which by default neither asks a loopback address nor
// forwards, and answers NXDOMAIN itself for the test. names (RFC 6761):
// its own configuration file (ResolverConfiguration) lifts both and
// forwards every query to the test's server.
func opendkimVerify(t *testing.T, srv *dnstest.Server, msg []byte) string {
	t.Helper()
	ubConf := filepath.Join(t.TempDir(), "resolver.conf")
	fwd := "server:\n\tdo-not-query-localhost: no\n\tlocal-zone: \"test.\" nodefault\n\tmodule-config: \"iterator\"\n" +
		"forward-zone:\n\tname: \".\"\n\tforward-addr: " + strings.Replace(srv.Addr, ":", "@", 1) + "\n"
	if err := os.WriteFile(ubConf, []byte(fwd), 0o644); err != nil {
		t.Fatal(err)
	}
	return opendkimTest(t, "Mode v\nSyslog no\nResolverConfiguration "+ubConf+"\n", msg)
}

// verified reports whether OpenDKIM's test-mode output says the
// signature verified.
func verified(out string) bool {
	return strings.Contains(out, "verification") && strings.Contains(out, "succeeded") &&
		!strings.Contains(out, "failed")
}

// TestSignVerifiedByOpenDKIM: every corpus message gw signs, with RSA-2048
// and with Ed25519, verifies in OpenDKIM; with its body changed it does not.
func TestSignVerifiedByOpenDKIM(t *testing.T) {
	srv := dnstest.Start(t)
	signers := map[string]*Signer{
		AlgRSA: NewSigner(map[string][]*PrivateKey{"example.test": {
			{Domain: "example.test", Selector: "od-rsa", Signer: publish(t, srv, AlgRSA, "od-rsa", "example.test")}}}),
		AlgEd25519: NewSigner(map[string][]*PrivateKey{"example.test": {
			{Domain: "example.test", Selector: "od-ed", Signer: publish(t, srv, AlgEd25519, "od-ed", "example.test")}}}),
	}
	for name, msg := range corpus(t) {
		crlf := ToCRLF(msg)
		for alg, signer := range signers {
			sig, err := signer.Sign(crlf)
			if err != nil {
				t.Fatalf("%s, %s: Sign: %v", name, alg, err)
			}
			signed := append(append([]byte{}, sig...), crlf...)
			out := opendkimVerify(t, srv, signed)
			if !verified(out) {
				t.Errorf("%s, %s: OpenDKIM does not verify gw's signature:\n%s\n%s", name, alg, out, signed)
			}
			t.Logf("%s, %s: %s", name, alg, strings.TrimSpace(out))
			tampered := bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\n\r\nP.S. send money\r\n"), 1)
			if out := opendkimVerify(t, srv, tampered); verified(out) || !strings.Contains(out, "failed") {
				t.Errorf("%s, %s: OpenDKIM on a changed body says:\n%s", name, alg, out)
			}
		}
	}
}

// opendkimSigField takes the DKIM-Signature field out of what OpenDKIM's
// test mode prints in signing mode (a line naming the file, then the field).
var opendkimSigField = regexp.MustCompile(`(?m)^DKIM-Signature:.*(\n[ \t].*)*`)

// TestVerifyOpenDKIMSigned: OpenDKIM's signatures, RSA-2048 with a key from
// opendkim-genkey and Ed25519, verify in gw on every corpus message; with
// the body changed they fail.
func TestVerifyOpenDKIMSigned(t *testing.T) {
	srv := dnstest.Start(t)
	dir := t.TempDir()
	genkey := exec.Command("opendkim-genkey", "-b", "2048", "-d", "example.test", "-s", "odgen", "-D", dir)
	if out, err := genkey.CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey (Debian opendkim-tools): %v\n%s", err, out)
	}
	// The record opendkim-genkey prints is zone-file text: its quoted
	// strings, joined, are the TXT record's value.
	zone, err := os.ReadFile(filepath.Join(dir, "odgen.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var rec strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(string(zone), -1) {
		rec.WriteString(m[1])
	}
	srv.Add(t, dkimpytest.TXT(KeyName("odgen", "example.test"), rec.String()))

	edKey := publish(t, srv, AlgEd25519, "od-ed", "example.test")
	edPEM, err := MarshalKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	edPath := filepath.Join(dir, "od-ed.key")
	if err := os.WriteFile(edPath, edPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	keys := []struct{ selector, alg, file string }{
		{"odgen", "rsa-sha256", filepath.Join(dir, "odgen.private")},
		{"od-ed", "ed25519-sha256", edPath},
	}
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	for name, msg := range corpus(t) {
		crlf := ToCRLF(msg)
		for _, k := range keys {
			conf := "Mode s\nSyslog no\nRequireSafeKeys no\nDomain example.test\nSelector " + k.selector +
				"\nKeyFile " + k.file + "\nSignatureAlgorithm " + k.alg + "\nCanonicalization relaxed/relaxed\n"
			out := opendkimTest(t, conf, msg)
			sig := opendkimSigField.FindString(out)
			if sig == "" {
				t.Fatalf("%s, %s: OpenDKIM printed no signature:\n%s", name, k.alg, out)
			}
			signed := append(ToCRLF([]byte(sig+"\n")), crlf...)
			res, err := v.Verify(context.Background(), signed)
			if err != nil || len(res) != 1 {
				t.Fatalf("%s, %s: %+v, %v", name, k.alg, res, err)
			}
			if r := res[0]; r.Value != Pass || r.Alg != k.alg || r.Selector != k.selector || r.Domain != "example.test" {
				t.Errorf("%s: gw on OpenDKIM's signature: %+v, want pass\n%s", name, r, signed)
			}
			tampered := bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\n\r\nP.S. send money\r\n"), 1)
			res, _ = v.Verify(context.Background(), tampered)
			if len(res) != 1 || res[0].Value == Pass {
				t.Errorf("%s, %s: gw on a changed body: %+v", name, k.alg, res)
			}
		}
	}
}
