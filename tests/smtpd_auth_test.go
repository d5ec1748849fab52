package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dmarcreport"
	"gw/lib/dns/dnstest"
)

// authWorld is the Internet of the gateway's authentication tests, served
// by unbound on loopback: bank.test (p=reject, mail from 127.0.0.10,
// DKIM-signed by dkimpy), shop.test (p=quarantine), the mailing list
// lists.test (ARC-seals with dkimpy, sends from 127.0.0.1), and gw.test,
// the organisation behind the gateway (keys made by gw-dkim).
type authWorld struct {
	srv              *dnstest.Server
	bankKey, listKey string
}

func newAuthWorld(t *testing.T, control string) *authWorld {
	t.Helper()
	w := &authWorld{srv: dnstest.Start(t)}
	w.srv.Add(t,
		`bank.test. TXT "v=spf1 ip4:127.0.0.10 -all"`, `_dmarc.bank.test. TXT "v=DMARC1; p=reject"`,
		`shop.test. TXT "v=spf1 ip4:127.0.0.11 -all"`, `_dmarc.shop.test. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test"`,
		`lists.test. TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`gw.test. TXT "v=spf1 ip4:127.0.0.5 -all"`, `_dmarc.gw.test. TXT "v=DMARC1; p=reject"`,
	)
	for _, k := range []struct {
		domain, sel string
		to          *string
	}{{"bank.test", "b1", &w.bankKey}, {"lists.test", "l1", &w.listKey}} {
		key, err := dkim.GenerateKey(dkim.AlgRSA)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := dkim.PublicRecord(key)
		w.srv.Add(t, dkimpytest.TXT(dkim.KeyName(k.sel, k.domain), rec))
		*k.to = dkimpytest.KeyFile(t, key)
	}
	for _, alg := range []string{"rsa", "ed25519"} {
		cmd := exec.Command(bin("gw-dkim"), "--control-dir", control, "keygen", "--algorithm", alg, "gw.test", alg+"2026")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gw-dkim keygen: %v", err)
		}
		w.srv.Add(t, strings.TrimSpace(string(out)))
	}
	return w
}

const bankStatement = "From: Bank <alerts@bank.test>\r\nTo: bob@inside.test\r\nSubject: Your statement\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s1@bank.test>\r\n\r\nYour statement is ready.\r\n"

// TestSMTPDMessageAuthentication is the gateway's face to the Internet
// with SPF tagged, DMARC enforced and lists.test as a trusted forwarder,
// and its relaying face for 127.0.0.5 signing with gw.test's keys.
func TestSMTPDMessageAuthentication(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{
		"rcpthosts": "inside.test\n", "authservid": "mx.gw.test\n",
		"spfpolicy": "tag\n", "dmarcpolicy": "enforce\n", "dmarcforwarders": "# our lists\nlists.test\n",
	})
	w := newAuthWorld(t, in.control)
	db := filepath.Join(in.dir, "tcp.smtp.db")
	c := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	c.Stdin = strings.NewReader("127.0.0.5:allow,RELAYCLIENT=\"\"\n127.0.0.6:allow,SPFPOLICY=\"refuse\"\n127.0.0.7:allow,GW_PEER=\"\"\n:allow\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	reports := filepath.Join(in.dir, "dmarc.db")
	addr := in.standalone(t, []string{"GW_DNS=" + w.srv.Addr}, "--acl", db, "--dmarc-reports", reports)
	data := func(name, msg string) string {
		p := filepath.Join(in.dir, name)
		if err := os.WriteFile(p, []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A spoofer writes as the bank: refused at the end of DATA.
	out := swaks(t, addr, "--from", "alerts@bank.test", "--to", "bob@inside.test", "--data", data("spoof", bankStatement))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "550 5.7.1 DMARC") {
		t.Errorf("spoofed p=reject domain: %q\n%s", r, out)
	}
	// ... and where SPFPOLICY=refuse, already at MAIL.
	out = swaks(t, addr, "--local-interface", "127.0.0.6", "--from", "alerts@bank.test", "--to", "bob@inside.test", "--data", data("spoof", bankStatement))
	if r := replyTo(out, "MAIL FROM"); !strings.HasPrefix(r, "550 5.7.23") {
		t.Errorf("SPF fail under SPFPOLICY=refuse: MAIL answered %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after the refusals", n)
	}

	// A spoofer writes as the shop (p=quarantine): accepted, held in the
	// quarantine, not queued.
	shop := strings.ReplaceAll(bankStatement, "bank.test", "shop.test")
	out = swaks(t, addr, "--from", "sales@shop.test", "--to", "bob@inside.test", "--data", data("shop", shop))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("spoofed p=quarantine domain: %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after a p=quarantine spoof", n)
	}
	heldID := heldByDMARC(t, in, "sales@shop.test")

	// The bank's list forwards a statement with a footer (the bank's DKIM
	// signature broken), sealed by the list: accepted, the list is trusted.
	signed := dkimpytest.Run(t, w.srv.Addr, []byte(bankStatement), "sign", "b1", "bank.test", w.bankKey, "rsa-sha256") + "\r\n" + bankStatement
	listed := "Authentication-Results: lists.test; dkim=pass header.d=bank.test; spf=pass smtp.mailfrom=bank.test\r\n" +
		strings.Replace(signed, "ready.\r\n", "ready.\r\n-- \r\nbank-customers list\r\n", 1)
	set := dkimpytest.Run(t, w.srv.Addr, []byte(listed), "arcsign", "l1", "lists.test", w.listKey, "lists.test")
	forged := "Authentication-Results: mx.gw.test; dmarc=pass header.from=bank.test\r\n"
	// The sender's own quarantine mark goes too: only the gateway marks.
	forgedMark := "X-Gw-Quarantine: dmarc; forged by the sender\r\n"
	out = swaks(t, addr, "--from", "bank-customers-bounces@lists.test", "--to", "bob@inside.test",
		"--data", data("listed", forgedMark+set+"\r\n"+forged+listed))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("forwarded by a trusted ARC sealer: %q\n%s", r, out)
	}

	// Another gw instance (GW_PEER) hands on a message it marked: kept.
	peerMsg := "X-Gw-Quarantine: dmarc; marked by the outside instance\r\nFrom: <a@example.test>\r\nTo: bob@inside.test\r\nSubject: marked\r\n\r\nhi\r\n"
	out = swaks(t, addr, "--local-interface", "127.0.0.7", "--from", "peer@example.test", "--to", "bob@inside.test", "--data", data("peer", peerMsg))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("from a GW_PEER: %q\n%s", r, out)
	}

	// The organisation's own mail, relayed for 127.0.0.5: signed.
	ours := strings.ReplaceAll(strings.ReplaceAll(bankStatement, "alerts@bank.test", "ceo@gw.test"), "bob@inside.test", "partner@elsewhere.test")
	out = swaks(t, addr, "--local-interface", "127.0.0.5", "--from", "ceo@gw.test", "--to", "partner@elsewhere.test", "--data", data("ours", ours))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("relayed mail: %q\n%s", r, out)
	}

	bodies := map[string]string{}
	for _, m := range in.messages(t) {
		bodies[m.Sender] = in.body(t, m)
	}
	if b, ok := bodies["sales@shop.test"]; ok {
		t.Errorf("the held message was queued:\n%s", b)
	}
	// The administrator releases it: queued as held, the mark on top.
	release := exec.Command(bin("gw-scan"), "--control-dir", in.control, "quarantine", "release", heldID)
	release.Env = in.env("GW_SCAN_QUEUE=" + bin("gw-queue"))
	if out, err := release.CombinedOutput(); err != nil {
		t.Fatalf("gw-scan quarantine release %s: %v\n%s", heldID, err, out)
	}
	for _, m := range in.messages(t) {
		if m.Sender == "sales@shop.test" {
			bodies[m.Sender] = in.body(t, m)
		}
	}
	if b := bodies["sales@shop.test"]; !strings.Contains(b, "X-Gw-Quarantine: dmarc") || !strings.Contains(b, "dmarc=fail") {
		t.Errorf("released message not queued, or not marked:\n%s", b)
	}
	if list := quarantineList(t, in); list != "" {
		t.Errorf("the quarantine after the release:\n%s", list)
	}
	b := bodies["bank-customers-bounces@lists.test"]
	for _, want := range []string{"Authentication-Results: mx.gw.test;", "arc=pass", "dmarc=fail", "spf=pass smtp.mailfrom=bank-customers-bounces@lists.test"} {
		if !strings.Contains(b, want) {
			t.Errorf("forwarded message lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "forged by the sender") {
		t.Errorf("the sender's X-Gw-Quarantine was kept:\n%s", b)
	}
	if b := bodies["peer@example.test"]; !strings.Contains(b, "X-Gw-Quarantine: dmarc; marked by the outside instance") {
		t.Errorf("a GW_PEER's mark was taken out:\n%s", b)
	}
	if strings.Contains(b, "mx.gw.test; dmarc=pass") {
		t.Errorf("the sender's Authentication-Results in our name was kept:\n%s", b)
	}
	b = bodies["ceo@gw.test"]
	if got := dkimpytest.Run(t, w.srv.Addr, dkim.ToCRLF([]byte(b)), "verify"); got != "pass\npass" {
		t.Errorf("relayed mail as queued, dkimpy says %q:\n%s", got, b)
	}
	// shop.test asks for aggregate reports: its message is counted.
	store, err := dmarcreport.Open(reports)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if due, _ := store.Due(time.Now().Add(24 * time.Hour)); len(due) != 1 || due[0].Domain != "shop.test" {
		t.Errorf("DMARC results recorded for %v, want shop.test", due)
	}
	log, _ := os.ReadFile(in.log)
	for _, want := range []string{"identity=mailfrom domain=bank.test result=fail", "dmarc=fail policy=reject", "reason=dmarc", "arc=pass", "mark_removed"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// quarantineList is what gw-scan quarantine list says of the instance's
// quarantine, beside its control directory.
func quarantineList(t *testing.T, in *smtpdInstance) string {
	t.Helper()
	out, err := exec.Command(bin("gw-scan"), "--control-dir", in.control, "quarantine", "list").Output()
	if err != nil {
		t.Fatalf("gw-scan quarantine list: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// heldByDMARC checks that the quarantine holds one message, from sender
// for bob@inside.test, held by DMARC, its Authentication-Results and mark
// on top, and returns its id.
func heldByDMARC(t *testing.T, in *smtpdInstance, sender string) string {
	t.Helper()
	list := quarantineList(t, in)
	f := strings.Fields(list)
	if strings.Count(list, "\n") != 0 || len(f) < 5 || f[3] != "from=<"+sender+">" || f[4] != "to=<bob@inside.test>" ||
		!strings.Contains(list, `reason="dmarc: dmarc=fail, policy quarantine`) {
		t.Fatalf("gw-scan quarantine list, want one message from %s held by DMARC:\n%s", sender, list)
	}
	show, err := exec.Command(bin("gw-scan"), "--control-dir", in.control, "quarantine", "show", f[0]).Output()
	if err != nil {
		t.Fatalf("gw-scan quarantine show %s: %v", f[0], err)
	}
	for _, want := range []string{"Received: ", "X-Gw-Quarantine: dmarc;", "Authentication-Results: mx.gw.test;", "dmarc=fail", "Your statement is ready."} {
		if !strings.Contains(string(show), want) {
			t.Errorf("held message lacks %q:\n%s", want, show)
		}
	}
	return f[0]
}

// TestSMTPDDMARCQuarantineTagOnly: with control/dmarcquarantine "tag" a
// p=quarantine spoof is queued with the X-Gw-Quarantine mark, for the
// inside to act on, and nothing is held.
func TestSMTPDDMARCQuarantineTagOnly(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{
		"rcpthosts": "inside.test\n", "authservid": "mx.gw.test\n",
		"dmarcpolicy": "enforce\n", "dmarcquarantine": "tag\n",
	})
	w := newAuthWorld(t, in.control)
	addr := in.standalone(t, []string{"GW_DNS=" + w.srv.Addr})
	p := filepath.Join(in.dir, "shop")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(bankStatement, "bank.test", "shop.test")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := swaks(t, addr, "--from", "sales@shop.test", "--to", "bob@inside.test", "--data", p)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("spoofed p=quarantine domain: %q\n%s", r, out)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want the tagged one", len(msgs))
	}
	if b := in.body(t, msgs[0]); !strings.Contains(b, "X-Gw-Quarantine: dmarc; dmarc=fail") {
		t.Errorf("queued message not marked:\n%s", b)
	}
	if list := quarantineList(t, in); list != "" {
		t.Errorf("tag only, yet held:\n%s", list)
	}
}

// TestSMTPDDMARCHoldUnwritable: a quarantine that cannot be written turns
// a p=quarantine message away with 451 4.3.0, for its client to retry;
// it is neither queued nor taken for lost.
func TestSMTPDDMARCHoldUnwritable(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{
		"rcpthosts": "inside.test\n", "authservid": "mx.gw.test\n", "dmarcpolicy": "enforce\n",
	})
	w := newAuthWorld(t, in.control)
	notADir := filepath.Join(in.dir, "not-a-directory")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := in.standalone(t, []string{"GW_DNS=" + w.srv.Addr}, "--quarantine", filepath.Join(notADir, "quarantine"))
	p := filepath.Join(in.dir, "shop")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(bankStatement, "bank.test", "shop.test")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := swaks(t, addr, "--from", "sales@shop.test", "--to", "bob@inside.test", "--data", p)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "451 4.3.0") {
		t.Errorf("p=quarantine spoof, quarantine unwritable: %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
	log, _ := os.ReadFile(in.log)
	if !strings.Contains(string(log), "reason=quarantine") {
		t.Errorf("log does not say why:\n%s", log)
	}
}
