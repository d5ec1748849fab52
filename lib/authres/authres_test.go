package authres

import (
	"os/exec"
	"strings"
	"testing"

	"gw/lib/arc"
	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/spf"
)

func report() Report {
	return Report{
		SPF: []spf.Result{
			{Identity: spf.IdentityHelo, Sender: "postmaster@mail.example.test", Domain: "mail.example.test", Value: spf.Pass},
			{Identity: spf.IdentityMailFrom, Sender: "bounce@example.test", Domain: "example.test", Value: spf.SoftFail},
		},
		DKIMChecked: true,
		DKIM: []dkim.Result{
			{Domain: "example.test", Identifier: "@example.test", Selector: "s1", Alg: "rsa-sha256", B: "AbCd+/12", Value: dkim.Pass},
			{Domain: "esp.test", Identifier: "@esp.test", Selector: "x", Alg: "ed25519-sha256", B: "zzzzzzzz", Value: dkim.Fail,
				Reason: "body hash did not verify\r\nX-Injected: yes \"quoted\" \\"},
		},
		DMARC:    &dmarc.Result{Value: dmarc.Pass, From: "example.test", Policy: dmarc.PolicyReject},
		ARC:      &arc.Result{Value: arc.Pass, Instances: 2, Sealer: "lists.test", OldestPass: 2},
		RemoteIP: "192.0.2.1",
	}
}

// TestFieldParsedByAuthres: the field gw writes is read back by Python's
// authres (Debian python3-authres, which python3-authheaders uses), an
// independent parser, method by method.
func TestFieldParsedByAuthres(t *testing.T) {
	field := Field("mx.gw.test", report())
	if strings.Contains(field, "X-Injected") && strings.Contains(field, "\r\nX-Injected") {
		t.Fatalf("a reason wrote a header line:\n%s", field)
	}
	script := `
import sys, authres
h = authres.AuthenticationResultsHeader.parse(sys.stdin.read().replace("\r\n", "\n").strip())
print(h.authserv_id)
for r in h.results:
    print(r.method, r.result, " ".join(sorted("%s.%s=%s" % (p.type, p.name, p.value) for p in r.properties)))
`
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Stdin = strings.NewReader(field)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("authres: %v\n%s\n%s", err, out, field)
	}
	want := []string{
		"mx.gw.test",
		"spf pass smtp.helo=mail.example.test",
		"spf softfail smtp.mailfrom=bounce@example.test",
		"dkim pass header.a=rsa-sha256 header.b=AbCd+/12 header.d=example.test header.i=@example.test header.s=s1",
		"dkim fail header.a=ed25519-sha256 header.b=zzzzzzzz header.d=esp.test header.i=@esp.test header.s=x",
		"dmarc pass header.from=example.test policy.dmarc=reject",
		"arc pass header.oldest-pass=2 smtp.remote-ip=192.0.2.1",
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("authres read:\n%s\nwant:\n%s\nfield:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), field)
	}
	if got := Field("mx.gw.test", Report{}); got != "Authentication-Results: mx.gw.test;\r\n\tnone\r\n" {
		t.Errorf("nothing checked: %q", got)
	}
}

func TestRemoveClaiming(t *testing.T) {
	msg := "Received: from x\n" +
		"Authentication-Results: MX.GW.test; dkim=pass header.d=bank.test\n" +
		"Authentication-Results: other.test; spf=pass\n" +
		"Authentication-Results:\n  mx.gw.test; dmarc=pass\n  header.from=bank.test\n" +
		"Authentication-Results: (forged) mx.gw.test 1; spf=pass\n" +
		"Authentication-Results: mx.gw.test.evil.test; spf=pass\n" +
		"Subject: hello\n" +
		"\n" +
		"Authentication-Results: mx.gw.test; in the body, kept\n"
	got, n := RemoveClaiming([]byte(msg), "mx.gw.test")
	want := "Received: from x\n" +
		"Authentication-Results: other.test; spf=pass\n" +
		"Authentication-Results: mx.gw.test.evil.test; spf=pass\n" +
		"Subject: hello\n" +
		"\n" +
		"Authentication-Results: mx.gw.test; in the body, kept\n"
	if string(got) != want || n != 3 {
		t.Errorf("removed %d:\n%s\nwant:\n%s", n, got, want)
	}
	crlf := strings.ReplaceAll(msg, "\n", "\r\n")
	if got, n := RemoveClaiming([]byte(crlf), "mx.gw.test"); string(got) != strings.ReplaceAll(want, "\n", "\r\n") || n != 3 {
		t.Errorf("CRLF: removed %d:\n%q", n, got)
	}
}

func FuzzRemoveClaiming(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.gw.test; spf=pass\r\n\r\nbody"), "mx.gw.test")
	f.Add([]byte("authentication-results:(c\\) mx.gw.test;\n x\n\n"), "mx.gw.test")
	f.Fuzz(func(t *testing.T, msg []byte, id string) {
		out, n := RemoveClaiming(msg, id)
		if len(out) > len(msg) || (n == 0 && string(out) != string(msg)) {
			t.Fatalf("removed %d, %q from %q", n, out, msg)
		}
	})
}
