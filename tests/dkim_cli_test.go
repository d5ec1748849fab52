package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns/dnstest"
)

// gwDKIM runs gw-dkim with the control directory and DNS server given,
// and returns its stdout, stderr and exit code.
func gwDKIM(t *testing.T, control, dnsAddr string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin("gw-dkim"), append([]string{"--control-dir", control}, args...)...)
	cmd.Env = append(os.Environ(), "GW_DNS="+dnsAddr)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestDKIMKeygenCheck: the admin makes an RSA and an Ed25519 key,
// publishes the records gw-dkim printed, as printed, and check finds them;
// a record that does not match, a missing one and a silent DNS are told
// apart by the exit code. Mail signed with the keys verifies in dkimpy.
func TestDKIMKeygenCheck(t *testing.T) {
	dir := workDir(t)
	control := filepath.Join(dir, "control")
	srv := dnstest.Start(t)

	rsaRec, stderr, code := gwDKIM(t, control, srv.Addr, "keygen", "example.test", "rsa2026")
	if code != 0 || !strings.Contains(stderr, "wrote") {
		t.Fatalf("keygen rsa: exit %d, %s", code, stderr)
	}
	edRec, _, code := gwDKIM(t, control, srv.Addr, "keygen", "--algorithm", "ed25519", "example.test", "ed2026")
	if code != 0 {
		t.Fatalf("keygen ed25519: exit %d", code)
	}
	if !strings.HasPrefix(rsaRec, "rsa2026._domainkey.example.test. IN TXT (") || !strings.Contains(edRec, "k=ed25519") {
		t.Fatalf("records:\n%s\n%s", rsaRec, edRec)
	}
	info, err := os.Stat(dkim.KeyFile(control, "example.test", "rsa2026"))
	if err != nil || info.Mode().Perm() != 0o640 {
		t.Fatalf("key file: %v, %v", info, err)
	}
	if _, stderr, code := gwDKIM(t, control, srv.Addr, "keygen", "example.test", "rsa2026"); code != 100 || !strings.Contains(stderr, "never overwritten") {
		t.Errorf("keygen over an existing key: exit %d, %s", code, stderr)
	}
	if _, _, code := gwDKIM(t, control, srv.Addr, "keygen", "example.test", "../../etc"); code != 100 {
		t.Errorf("keygen with a path as selector: exit %d", code)
	}

	// Nothing published yet.
	out, _, code := gwDKIM(t, control, srv.Addr, "check", "example.test")
	if code != 100 || strings.Count(out, ": bad:") != 2 {
		t.Errorf("check before publishing: exit %d\n%s", code, out)
	}
	srv.Add(t, rsaRec, edRec)
	out, _, code = gwDKIM(t, control, srv.Addr, "check", "example.test")
	if code != 0 || !strings.Contains(out, "rsa2026._domainkey.example.test: ok rsa") || !strings.Contains(out, "ed2026._domainkey.example.test: ok ed25519") {
		t.Errorf("check after publishing: exit %d\n%s", code, out)
	}

	// A key replaced on disk but not in DNS.
	other := filepath.Join(dir, "other")
	newRec, _, _ := gwDKIM(t, other, srv.Addr, "keygen", "--algorithm", "ed25519", "other.test", "ed2026")
	srv.Add(t, strings.Replace(newRec, "other.test", "changed.test", 1))
	os.MkdirAll(filepath.Join(control, "dkim", "changed.test"), 0o750)
	copyFile(t, dkim.KeyFile(control, "example.test", "ed2026"), dkim.KeyFile(control, "changed.test", "ed2026"))
	out, _, code = gwDKIM(t, control, srv.Addr, "check", "changed.test")
	if code != 100 || !strings.Contains(out, "not the public half") {
		t.Errorf("check of a mismatched key: exit %d\n%s", code, out)
	}

	// DNS that does not answer is not a verdict.
	os.MkdirAll(filepath.Join(control, "dkim", "dead.test"), 0o750)
	copyFile(t, dkim.KeyFile(control, "example.test", "ed2026"), dkim.KeyFile(control, "dead.test", "ed2026"))
	srv.Fail("dead.test.")
	if out, _, code := gwDKIM(t, control, srv.Addr, "check", "dead.test"); code != 111 || !strings.Contains(out, "unknown") {
		t.Errorf("check with DNS failing: exit %d\n%s", code, out)
	}
	if _, _, code := gwDKIM(t, control, srv.Addr, "check", "nokeys.test"); code != 100 {
		t.Errorf("check of a domain without keys: exit %d", code)
	}

	// The keys sign, and dkimpy verifies what they signed.
	keys, err := dkim.LoadKeys(control)
	if err != nil {
		t.Fatal(err)
	}
	msg := dkim.ToCRLF([]byte("From: a@example.test\nTo: b@inside.test\nSubject: hi\n\nhello\n"))
	sigs, err := dkim.NewSigner(keys).Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := dkimpytest.Run(t, srv.Addr, append(sigs, msg...), "verify"); got != "pass\npass" {
		t.Errorf("dkimpy on mail signed with gw-dkim's keys: %q", got)
	}
}

// TestDKIMOpendkimKey: a key made by OpenDKIM's opendkim-genkey, with the
// record it wrote published, is accepted by gw-dkim check and signs mail
// dkimpy verifies: an admin moving from OpenDKIM keeps keys and records.
func TestDKIMOpendkimKey(t *testing.T) {
	genkey := need(t, "opendkim-genkey")
	dir := workDir(t)
	control := filepath.Join(dir, "control")
	keyDir := filepath.Join(control, "dkim", "example.test")
	os.MkdirAll(keyDir, 0o750)
	cmd := exec.Command(genkey, "-b", "2048", "-d", "example.test", "-s", "od2026", "-D", keyDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	// opendkim-genkey writes od2026.private (the key) and od2026.txt (the
	// record, its owner relative to the zone).
	if err := os.Rename(filepath.Join(keyDir, "od2026.private"), filepath.Join(keyDir, "od2026.key")); err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(filepath.Join(keyDir, "od2026.txt"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(keyDir, "od2026.txt"))
	record := regexp.MustCompile(`;[^"\n]*$`).ReplaceAllString(strings.TrimSpace(string(txt)), "")
	record = strings.Replace(record, "od2026._domainkey", "od2026._domainkey.example.test.", 1)
	srv := dnstest.Start(t)
	srv.Add(t, record)
	if out, stderr, code := gwDKIM(t, control, srv.Addr, "check", "example.test"); code != 0 || !strings.Contains(out, "ok rsa") {
		t.Fatalf("check of OpenDKIM's key: exit %d\n%s%s\nrecord: %s", code, out, stderr, record)
	}
	keys, err := dkim.LoadKeys(control)
	if err != nil {
		t.Fatal(err)
	}
	msg := dkim.ToCRLF([]byte("From: a@example.test\nTo: b@inside.test\nSubject: hi\n\nhello\n"))
	sigs, err := dkim.NewSigner(keys).Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := dkimpytest.Run(t, srv.Addr, append(sigs, msg...), "verify"); got != "pass" {
		t.Errorf("dkimpy on mail signed with OpenDKIM's key: %q", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		t.Fatal(err)
	}
}
