package tests

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestSMTPDBadCertificate: a control/servercert.pem that does not load
// (here, not PEM at all) costs the listener its STARTTLS, said in an alert
// line, not its life: it listens, takes mail in the clear, and offers no
// STARTTLS it could not keep.
func TestSMTPDBadCertificate(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"servercert.pem": "this is not a certificate\n"})
	addr := in.standalone(t, nil)

	out := swaks(t, addr, "--from", "a@example.net", "--to", "b@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("a message with a bad certificate in place: %q\n%s", r, out)
	}
	if strings.Contains(out, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate that loads:\n%s", out)
	}
	log, _ := os.ReadFile(in.log)
	if !strings.Contains(string(log), `alert tls_off reason="certificate does not load" err="control/servercert.pem: `) {
		t.Errorf("no alert line for the certificate:\n%s", log)
	}
}

// TestInstanceCheckWarnsOfCertificate: gw-instance check names a
// certificate that expires soon or does not load as a warning, exit 0,
// since gw-smtpd serves with it or without STARTTLS; gw-instance run
// says the same and starts the instance, whose listener then offers no
// STARTTLS. Only a listener that speaks TLS from the first byte, which
// cannot start without it, makes the certificate a problem (exit 100).
func TestInstanceCheckWarnsOfCertificate(t *testing.T) {
	root := workDir(t)
	addr := freeAddr(t)
	if _, errs, code := gwInstanceRun(t, root, "create", "main", "--me", "gw.test", "--smtp", addr, "--bin-dir", binDir); code != 0 {
		t.Fatalf("create: %s", errs)
	}
	cert := root + "/main/control/servercert.pem"

	// $ gw-instance check main   (a certificate good for an hour more)
	writeCert(t, cert)
	_, errs, code := gwInstanceRun(t, root, "check", "main")
	if code != 0 || !strings.Contains(errs, "gw-instance: main: warning: control/servercert.pem: expires on ") {
		t.Errorf("check with a certificate expiring: exit %d:\n%s", code, errs)
	}

	// $ gw-instance check main   (a certificate that does not load)
	os.WriteFile(cert, []byte("this is not a certificate\n"), 0o600)
	_, errs, code = gwInstanceRun(t, root, "check", "main")
	if code != 0 || !strings.Contains(errs, "warning: control/servercert.pem: ") || !strings.Contains(errs, "run without STARTTLS") {
		t.Errorf("check with a certificate that does not load: exit %d:\n%s", code, errs)
	}

	// $ gw-instance run main: the warning, then a listener without STARTTLS
	run := exec.Command(bin("gw-instance"), "--root", root, "run", "main")
	var out strings.Builder
	run.Stdout, run.Stderr = &lockedWriter{w: &out}, &lockedWriter{w: &out}
	startListening(t, run, addr)
	tr := swaks(t, addr, "--from", "a@example.org", "--to", "b@gw.test")
	if r := replyTo(tr, "."); !strings.HasPrefix(r, "250 ") {
		t.Errorf("the instance's listener took no message: %q\n%s", r, tr)
	}
	if strings.Contains(tr, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate that loads:\n%s", tr)
	}
	run.Process.Signal(syscall.SIGTERM)
	run.Wait()
	if !strings.Contains(out.String(), "gw-instance: main: warning: control/servercert.pem: ") {
		t.Errorf("gw-instance run did not warn of the certificate:\n%s", out.String())
	}

	// $ gw-instance listen main smtps smtp ADDR --tls; gw-instance check main
	if _, errs, code := gwInstanceRun(t, root, "listen", "main", "smtps", "smtp", freeAddr(t), "--", "--tls"); code != 0 {
		t.Fatalf("listen --tls: %s", errs)
	}
	_, errs, code = gwInstanceRun(t, root, "check", "main")
	if code != 100 || !strings.Contains(errs, "listener smtps speaks TLS from the first byte and will not start") {
		t.Errorf("check with an implicit TLS listener and no certificate: exit %d:\n%s", code, errs)
	}
}
