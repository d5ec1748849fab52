package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
)

// TestSMTPDDNSBL serves a block list from a real DNS server on loopback:
// 127.0.0.1 is listed, so RCPT gets rblsmtpd's temporary refusal with the
// zone's TXT text, or 553 for a zone written "-zone"; a relay client and
// RBLSMTPD="" are never checked; RBLSMTPD="-text" refuses without DNS.
func TestSMTPDDNSBL(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "1.0.0.127.zen.example. A 127.0.0.2", `1.0.0.127.zen.example. TXT "listed in zen, see https://zen.example/"`,
		"1.0.0.127.perm.example. A 127.0.0.2")
	cases := []struct {
		name, zones, rules, want string
	}{
		{"temporary listing", "zen.example\n", "", "451 4.7.1 listed in zen, see https://zen.example/"},
		{"permanent zone", "other.example\n-perm.example\n", "", "553 5.7.1 listed at perm.example"},
		{"not listed", "other.example\n", "", "250 2.0.0"},
		{"relay client skipped", "zen.example\n", "127.0.0.1:allow,RELAYCLIENT=\"\"\n", "250 2.0.0"},
		{"RBLSMTPD empty skips", "zen.example\n", "127.0.0.1:allow,RBLSMTPD=\"\"\n", "250 2.0.0"},
		{"RBLSMTPD text", "", "127.0.0.1:allow,RBLSMTPD=\"-go away\"\n", "553 5.7.1 go away"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newSMTPDInstance(t, map[string]string{"rblzones": c.zones})
			var args []string
			if c.rules != "" {
				db := filepath.Join(in.dir, "tcp.smtp.db")
				cmd := exec.Command(bin("gw-tcprules"), db, db+".tmp")
				cmd.Stdin = strings.NewReader(c.rules)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("gw-tcprules: %v\n%s", err, out)
				}
				args = []string{"--acl", db}
			}
			addr := in.standalone(t, []string{"GW_DNS=" + srv.Addr}, args...)
			out := swaks(t, addr, "--from", "s@sender.example", "--to", "bob@example.com")
			if r := replyTo(out, "RCPT TO"); !strings.HasPrefix(r, c.want) {
				t.Errorf("RCPT answered %q, want %q", r, c.want)
			}
		})
	}
}

func TestSMTPDGreylist(t *testing.T) {
	const delay = 4 * time.Second
	in := newSMTPDInstance(t, map[string]string{"greylistdelay": fmt.Sprintf("%d\n", delay/time.Second)})
	db := filepath.Join(in.dir, "state", "greylist.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	addr := in.underTcpserver(t, "", "--greylist", db)
	send := func(rcpt string) string {
		return replyTo(swaks(t, addr, "--from", "s@sender.example", "--to", rcpt), "RCPT TO")
	}
	first := time.Now()
	if r := send("bob@example.com"); !strings.HasPrefix(r, "451 4.7.1") {
		t.Fatalf("first try: %q", r)
	}
	// On a loaded machine swaks may take long: the early retry proves
	// something only when it starts well before the delay is over.
	if time.Since(first) < delay-2*time.Second {
		if r := send("bob@example.com"); !strings.HasPrefix(r, "451 4.7.1") {
			t.Fatalf("retry before the delay: %q", r)
		}
	} else {
		t.Logf("the early retry was not tried: the first attempt took %v", time.Since(first))
	}
	time.Sleep(time.Until(first.Add(delay + 500*time.Millisecond)))
	if r := send("bob@example.com"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("retry after the delay: %q", r)
	}
	// The network retried once: it is whitelisted for new triplets too.
	if r := send("carol@example.com"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("whitelisted client, new triplet: %q", r)
	}
	if n := len(in.messages(t)); n != 2 {
		t.Errorf("%d messages queued, want 2", n)
	}
}

// writeCert makes a self-signed certificate and key in one PEM file, as
// control/servercert.pem holds them.
func writeCert(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.example.net"},
		DNSNames: []string{"gw.example.net"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkpasswordScript is a checkpassword program: it reads
// user NUL password NUL timestamp NUL on fd 3 and runs its arguments when
// the user is alice with password "s3cret pass".
const checkpasswordScript = `#!/bin/sh
input=$(head -c 512 <&3 | tr '\0' '\n')
user=$(printf '%s\n' "$input" | sed -n 1p)
pass=$(printf '%s\n' "$input" | sed -n 2p)
[ "$user" = alice ] && [ "$pass" = "s3cret pass" ] && exec "$@"
exit 1
`

func TestSMTPDStartTLSAndAuth(t *testing.T) {
	need(t, "openssl")
	in := newSMTPDInstance(t, nil)
	writeCert(t, filepath.Join(in.control, "servercert.pem"))
	cp := filepath.Join(in.dir, "checkpassword")
	os.WriteFile(cp, []byte(checkpasswordScript), 0o755)
	addr := in.underTcpserver(t, "", "--checkpassword", cp)

	// Without TLS: no AUTH offered, and AUTH is refused.
	replies := smtpdDialogue(t, addr, "EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHMzY3JldCBwYXNz\r\nQUIT\r\n")
	if got := strings.Join(replies, "|"); !strings.Contains(got, "|530 5.7.0 ") {
		t.Errorf("AUTH before STARTTLS: %q", replies)
	}
	// swaks over STARTTLS with the right password relays.
	out := swaks(t, addr, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret pass",
		"--from", "alice@example.com", "--to", "friend@elsewhere.example")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("authenticated relay: %q\n%s", r, out)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || !strings.Contains(in.body(t, msgs[0]), " with ESMTPSA id ") {
		t.Errorf("queued %d messages; want one received with ESMTPSA", len(msgs))
	}
	// A wrong password: 535, and no relaying.
	out = swaks(t, addr, "--tls", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "wrong",
		"--from", "alice@example.com", "--to", "friend@elsewhere.example")
	if !strings.Contains(out, "535 5.7.8") {
		t.Errorf("wrong password:\n%s", out)
	}
	log, _ := os.ReadFile(in.log)
	if strings.Contains(string(log), "s3cret") || strings.Contains(string(log), "wrong") {
		t.Errorf("the log holds a password:\n%s", log)
	}
	if !strings.Contains(string(log), "info auth sid=") || !strings.Contains(string(log), "info tls sid=") {
		t.Errorf("log lacks tls/auth lines:\n%s", log)
	}
	// openssl's own STARTTLS client completes the handshake and sees the
	// EHLO again.
	c := exec.Command("openssl", "s_client", "-starttls", "smtp", "-connect", addr, "-quiet")
	c.Stdin = strings.NewReader("EHLO c.example\r\nQUIT\r\n")
	o, _ := c.CombinedOutput()
	if !strings.Contains(string(o), "250-AUTH PLAIN LOGIN") || !strings.Contains(string(o), "221 2.0.0") {
		t.Errorf("openssl s_client -starttls smtp:\n%s", o)
	}
	// AUTH PLAIN with an authorization identity: alice may act as alice,
	// never as bob (RFC 4616 section 2); HELP is answered.
	for _, c := range []struct{ authzid, want string }{{"alice", "235 2.7.0"}, {"bob", "535 5.7.8"}} {
		resp := base64.StdEncoding.EncodeToString([]byte(c.authzid + "\x00alice\x00s3cret pass"))
		cmd := exec.Command("openssl", "s_client", "-starttls", "smtp", "-connect", addr, "-quiet")
		cmd.Stdin = strings.NewReader("EHLO c.example\r\nHELP\r\nAUTH PLAIN " + resp + "\r\nQUIT\r\n")
		o, _ := cmd.CombinedOutput()
		if !strings.Contains(string(o), "\n"+c.want+" ") || !strings.Contains(string(o), "\n214 2.0.0 ") {
			t.Errorf("AUTH PLAIN with authzid %s: want %s and 214 to HELP:\n%s", c.authzid, c.want, o)
		}
	}
}

func TestSMTPDImplicitTLS(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	writeCert(t, filepath.Join(in.control, "servercert.pem"))
	addr := in.standalone(t, nil, "--tls")
	out := swaks(t, addr, "--tls-on-connect", "--from", "s@sender.example", "--to", "bob@example.com")
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("implicit TLS: %q\n%s", r, out)
	}
}
