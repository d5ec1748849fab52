package tests

import (
	"os"
	"strings"
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
