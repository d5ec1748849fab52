package authcheck

import (
	"context"
	"crypto"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dmarcreport"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

// world is the Internet of these tests: unbound on loopback serving
// bank.test (p=reject, signs with DKIM), shop.test (p=quarantine), the
// mailing list lists.test (seals ARC), and the gateway's own domain
// gw.test (signs and seals); an instance's control directory.
type world struct {
	srv     *dnstest.Server
	control string
	bankKey string // dkimpy's key file for bank.test
	listKey string // dkimpy's key file for lists.test
}

var (
	bankIP   = netip.MustParseAddr("192.0.2.10")
	listIP   = netip.MustParseAddr("198.51.100.20")
	spoofIP  = netip.MustParseAddr("203.0.113.66")
	insideIP = netip.MustParseAddr("10.0.0.5")
)

func newWorld(t *testing.T, controls map[string]string) *world {
	t.Helper()
	w := &world{srv: dnstest.Start(t), control: t.TempDir()}
	w.srv.Add(t,
		`bank.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`_dmarc.bank.test. TXT "v=DMARC1; p=reject"`,
		`shop.test. TXT "v=spf1 ip4:192.0.2.11 -all"`,
		`_dmarc.shop.test. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test"`,
		`lists.test. TXT "v=spf1 ip4:198.51.100.20 -all"`,
	)
	w.bankKey = dkimpytest.KeyFile(t, w.publish(t, dkim.AlgRSA, "b1", "bank.test"))
	w.listKey = dkimpytest.KeyFile(t, w.publish(t, dkim.AlgRSA, "l1", "lists.test"))
	for _, k := range []struct{ alg, sel string }{{dkim.AlgRSA, "gwrsa"}, {dkim.AlgEd25519, "gwed"}} {
		key := w.publish(t, k.alg, k.sel, "gw.test")
		pem, _ := dkim.MarshalKey(key)
		path := dkim.KeyFile(w.control, "gw.test", k.sel)
		os.MkdirAll(filepath.Dir(path), 0o750)
		if err := os.WriteFile(path, pem, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	controls["me"] = "mx.gw.test"
	for name, v := range controls {
		if err := os.WriteFile(filepath.Join(w.control, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) publish(t *testing.T, alg, sel, domain string) crypto.Signer {
	k, err := dkim.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.PublicRecord(k)
	w.srv.Add(t, dkimpytest.TXT(dkim.KeyName(sel, domain), rec))
	return k
}

func (w *world) checker(t *testing.T) *Checker {
	cfg, err := Load(w.control)
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, dns.New(w.srv.Addr))
}

func noEnv(string) (string, bool) { return "", false }

const bankMail = "From: Bank <alerts@bank.test>\nTo: bob@inside.test\nSubject: Your statement\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <s1@bank.test>\n\nYour statement is ready.\n"

// signedByBank is bankMail signed by dkimpy with bank.test's key.
func (w *world) signedByBank(t *testing.T) string {
	sig := dkimpytest.Run(t, w.srv.Addr, dkim.ToCRLF([]byte(bankMail)), "sign", "b1", "bank.test", w.bankKey, "rsa-sha256")
	return strings.ReplaceAll(sig, "\r\n", "\n") + "\n" + bankMail
}

func (w *world) deliver(t *testing.T, c *Checker, tx *Transaction, msg string) Outcome {
	t.Helper()
	if r := c.Mail(context.Background(), tx); r != nil {
		t.Fatalf("MAIL refused: %+v", r)
	}
	out, err := c.End(context.Background(), tx, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInboundVerdicts: a spoofed p=reject domain is refused at the end of
// DATA, a spoofed p=quarantine one quarantined, the bank's own mail passes
// and is marked so, and a forged Authentication-Results in our name is
// gone; a forwarded message whose DKIM the list broke is accepted from a
// trusted sealer and refused from anyone else.
func TestInboundVerdicts(t *testing.T) {
	w := newWorld(t, map[string]string{"spfpolicy": "tag", "dmarcpolicy": "enforce", "dmarcforwarders": "lists.test"})
	c := w.checker(t)
	store, err := dmarcreport.Open(filepath.Join(t.TempDir(), "dmarc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c.Reports = store
	face, _ := c.cfg.ForClient(noEnv)

	spoof := &Transaction{Face: face, Client: spoofIP, Helo: "spoofer.test", Sender: "alerts@bank.test"}
	out := w.deliver(t, c, spoof, bankMail)
	if out.Refuse == nil || out.Refuse.Code != 550 || out.Refuse.Enhanced != "5.7.1" {
		t.Errorf("spoofed p=reject: %+v", out)
	}

	shop := &Transaction{Face: face, Client: spoofIP, Helo: "spoofer.test", Sender: "sales@shop.test"}
	out = w.deliver(t, c, shop, strings.ReplaceAll(bankMail, "bank.test", "shop.test"))
	if out.Refuse != nil || !out.Quarantine || out.ReportErr != nil {
		t.Errorf("spoofed p=quarantine: %+v", out)
	}
	// shop.test asks for reports (bank.test does not): one row, counted.
	due, _ := store.Due(time.Now().Add(24 * time.Hour))
	if len(due) != 1 || due[0].Domain != "shop.test" {
		t.Fatalf("report periods: %v", due)
	}
	if rows, _ := store.Rows(due[0]); len(rows) != 1 || rows[0].Count != 1 || rows[0].Row.Disposition != "quarantine" || rows[0].Row.SourceIP != spoofIP.String() {
		t.Errorf("recorded: %+v", rows)
	}

	// Headers DMARC cannot judge: two authors, a line no reader agrees on.
	for name, msg := range map[string]string{
		"two From fields":  "From: alerts@bank.test\n" + bankMail,
		"two From domains": strings.Replace(bankMail, "From: Bank <alerts@bank.test>", "From: alerts@bank.test, x@evil.test", 1),
		"broken header":    "Subject: x\nnot a header line\n" + bankMail,
	} {
		tx := &Transaction{Face: face, Client: spoofIP, Helo: "spoofer.test", Sender: "x@evil.test"}
		if out := w.deliver(t, c, tx, msg); out.Refuse == nil || out.Refuse.Code != 550 {
			t.Errorf("%s: %+v", name, out)
		}
	}
	noFrom := &Transaction{Face: face, Client: spoofIP, Helo: "spoofer.test", Sender: "x@evil.test"}
	if out := w.deliver(t, c, noFrom, "To: bob@inside.test\nSubject: no author\n\nhi\n"); out.Refuse != nil || out.DMARC.Value != "none" {
		t.Errorf("no From: %+v", out)
	}

	genuine := &Transaction{Face: face, Client: bankIP, Helo: "mail.bank.test", Sender: "bounces@bank.test"}
	forged := "Authentication-Results: mx.gw.test; dkim=pass header.d=bank.test; dmarc=pass\n"
	out = w.deliver(t, c, genuine, forged+w.signedByBank(t))
	ar := strings.Join(out.Prepend, "")
	if out.Refuse != nil || out.Quarantine || out.Removed != 1 || strings.Contains(string(out.Message), forged) {
		t.Errorf("genuine: %+v", out)
	}
	for _, want := range []string{"Authentication-Results: mx.gw.test;", "spf=pass smtp.mailfrom=bounces@bank.test",
		"dkim=pass", "header.d=bank.test", "dmarc=pass header.from=bank.test", "arc=none"} {
		if !strings.Contains(ar, want) {
			t.Errorf("genuine: Authentication-Results lacks %q:\n%s", want, ar)
		}
	}

	// The list adds a footer (DKIM broken), seals, and sends from its IP.
	listed := strings.Replace(w.signedByBank(t), "ready.\n", "ready.\n-- \nbank-customers mailing list\n", 1)
	listed = "Authentication-Results: lists.test; dkim=pass header.d=bank.test; dmarc=pass; spf=pass smtp.mailfrom=bank.test\n" + listed
	set := dkimpytest.Run(t, w.srv.Addr, dkim.ToCRLF([]byte(listed)), "arcsign", "l1", "lists.test", w.listKey, "lists.test")
	forwarded := strings.ReplaceAll(set, "\r\n", "\n") + "\n" + listed
	fromList := &Transaction{Face: face, Client: listIP, Helo: "mail.lists.test", Sender: "bank-customers-bounces@lists.test"}
	out = w.deliver(t, c, fromList, forwarded)
	if out.Refuse != nil || out.ARC == nil || out.ARC.Value != "pass" || out.DMARC.Value != "fail" || !strings.Contains(out.Reason, "trusted forwarder lists.test") {
		t.Errorf("forwarded by a trusted sealer: refuse=%+v arc=%+v dmarc=%+v reason=%s", out.Refuse, out.ARC, out.DMARC, out.Reason)
	}
	// the list's own signature holds: nothing changed after its seal
	if ar := strings.Join(out.Prepend, ""); !strings.Contains(ar, "arc=pass header.oldest-pass=0") {
		t.Errorf("forwarded: Authentication-Results lacks arc=pass header.oldest-pass=0:\n%s", ar)
	}
	untrusted := newWorld(t, map[string]string{"dmarcpolicy": "enforce"})
	untrusted.srv = w.srv
	c2 := New(mustLoad(t, untrusted.control), dns.New(w.srv.Addr))
	face2, _ := c2.cfg.ForClient(noEnv)
	fromList.Face = face2
	if out := w.deliver(t, c2, fromList, forwarded); out.Refuse == nil {
		t.Errorf("forwarded, sealer not trusted: accepted %+v", out.DMARC)
	}
}

func mustLoad(t *testing.T, dir string) *Config {
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFaces: the tcprules variables set per face: SPF refused at MAIL
// where SPFPOLICY=refuse, reported only where DMARCPOLICY=none; relayed
// mail signed (dkimpy verifies both signatures); the inside face seals
// (dkimpy's arcverify passes the chain).
func TestFaces(t *testing.T) {
	w := newWorld(t, map[string]string{"spfpolicy": "tag", "dmarcpolicy": "enforce", "arcseal": "gw.test gwrsa"})
	c := w.checker(t)
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	refuse, err := c.cfg.ForClient(env("SPFPOLICY", "refuse"))
	if err != nil {
		t.Fatal(err)
	}
	tx := &Transaction{Face: refuse, Client: spoofIP, Helo: "spoofer.test", Sender: "alerts@bank.test"}
	if r := c.Mail(context.Background(), tx); r == nil || r.Code != 550 || r.Enhanced != "5.7.23" {
		t.Errorf("SPFPOLICY=refuse, SPF fail: %+v", r)
	}
	if _, err := c.cfg.ForClient(env("SPFPOLICY", "sometimes")); err == nil {
		t.Error("bad SPFPOLICY accepted")
	}

	lax, _ := c.cfg.ForClient(env("DMARCPOLICY", "none"))
	out := w.deliver(t, c, &Transaction{Face: lax, Client: spoofIP, Helo: "spoofer.test", Sender: "alerts@bank.test"}, bankMail)
	if out.Refuse != nil || out.Quarantine || out.DMARC.Value != "fail" {
		t.Errorf("DMARCPOLICY=none: %+v", out)
	}

	relay, _ := c.cfg.ForClient(noEnv)
	ours := strings.ReplaceAll(bankMail, "alerts@bank.test", "ceo@gw.test")
	out = w.deliver(t, c, &Transaction{Face: relay, Client: insideIP, Helo: "pc1", Sender: "ceo@gw.test", Relaying: true}, ours)
	signed := strings.Join(out.Prepend, "") + string(out.Message)
	if got := dkimpytest.Run(t, w.srv.Addr, dkim.ToCRLF([]byte(signed)), "verify"); got != "pass\npass" {
		t.Errorf("relayed mail, dkimpy says %q:\n%s", got, signed)
	}

	inside, _ := c.cfg.ForClient(env("ARCSEAL", ""))
	out = w.deliver(t, c, &Transaction{Face: inside, Client: bankIP, Helo: "mail.bank.test", Sender: "bounces@bank.test"}, w.signedByBank(t))
	sealed := strings.Join(out.Prepend, "") + string(out.Message)
	if !strings.HasPrefix(sealed, "ARC-Seal: i=1;") {
		t.Fatalf("inside face: not sealed:\n%s", sealed)
	}
	if got := dkimpytest.Run(t, w.srv.Addr, dkim.ToCRLF([]byte(sealed)), "arcverify"); !strings.HasPrefix(got, "cv=pass") {
		t.Errorf("inside face's seal, dkimpy says %q:\n%s", got, sealed)
	}
}

func TestLoadRefusesBadSettings(t *testing.T) {
	for name, v := range map[string]string{"spfpolicy": "maybe", "dmarcpolicy": "strict", "dmarcforwarders": "not a host", "arcseal": "gw.test nokey", "dmarcquarantine": "junk"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "me"), []byte("mx.gw.test\n"), 0o644)
		os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("control/%s %q: %v", name, v, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "spfpolicy"), []byte("tag\n"), 0o644)
	if _, err := Load(dir); err == nil {
		t.Error("no authserv-id and no me: loaded")
	}
	if cfg, err := Load(t.TempDir()); err != nil || cfg.Verify || cfg.Signer != nil || cfg.Sealer != nil || cfg.TagOnly {
		t.Errorf("empty control: %+v, %v", cfg, err)
	}
	// DMARC's quarantine holds unless told to tag only.
	for v, tagOnly := range map[string]bool{"hold": false, "tag": true, " TAG ": true} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "dmarcquarantine"), []byte(v+"\n"), 0o644)
		if cfg, err := Load(dir); err != nil || cfg.TagOnly != tagOnly {
			t.Errorf("control/dmarcquarantine %q: %+v, %v", v, cfg, err)
		}
	}
}

// TestRuleTurnsChecksOn: with no control file but control/me, a rule's
// DMARCPOLICY and SPFPOLICY turn the checks on for its clients only.
func TestRuleTurnsChecksOn(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "me"), []byte("mx.gw.test\n"), 0o644)
	cfg := mustLoad(t, dir)
	c := New(cfg, dns.New("127.0.0.1:1"))
	plain, _ := cfg.ForClient(noEnv)
	if c.Needed(&Transaction{Face: plain}) {
		t.Error("nothing configured, yet the message is spooled")
	}
	on, err := cfg.ForClient(func(k string) (string, bool) {
		return map[string]string{"DMARCPOLICY": "enforce", "SPFPOLICY": "tag"}[k], k == "DMARCPOLICY" || k == "SPFPOLICY"
	})
	if err != nil || !on.Verify || on.SPF.String() != "tag" || !c.Needed(&Transaction{Face: on}) {
		t.Errorf("rule's variables: %+v, %v", on, err)
	}
}

// TestHeloCheckedOnceASession: a second transaction with the same HELO
// reuses its result; a new HELO name is checked again.
func TestHeloCheckedOnceASession(t *testing.T) {
	w := newWorld(t, map[string]string{"spfpolicy": "tag"})
	c := w.checker(t)
	face, _ := c.cfg.ForClient(noEnv)
	ctx := context.Background()
	tx := &Transaction{Face: face, Client: bankIP, Helo: "mail.bank.test", Sender: "a@bank.test"}
	c.Mail(ctx, tx)
	first := tx.HeloSPF
	if first == nil || first.Name != "mail.bank.test" {
		t.Fatalf("HELO result: %+v", first)
	}
	tx2 := &Transaction{Face: face, Client: bankIP, Helo: "mail.bank.test", Sender: "b@bank.test", HeloSPF: first}
	c.Mail(ctx, tx2)
	if tx2.HeloSPF != first || tx2.SPF()[0] != first.Result {
		t.Errorf("same HELO checked again: %+v", tx2.HeloSPF)
	}
	tx3 := &Transaction{Face: face, Client: bankIP, Helo: "other.bank.test", Sender: "b@bank.test", HeloSPF: first}
	c.Mail(ctx, tx3)
	if tx3.HeloSPF == first || tx3.HeloSPF.Name != "other.bank.test" {
		t.Errorf("new HELO not checked: %+v", tx3.HeloSPF)
	}
}
