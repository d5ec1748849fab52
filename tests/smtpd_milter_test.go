package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns/dnstest"
	"gw/tests/internal/clamdtest"
)

// milterDaemon runs a milter daemon of Debian's in the foreground with a
// private configuration, and waits for its socket.
func milterDaemon(t *testing.T, sock string, argv ...string) {
	t.Helper()
	need(t, argv[0])
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := os.Create(sock + ".out")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); cmd.Wait() })
	waitFor(t, argv[0]+"'s socket", 30*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// aclDB compiles rules with gw-tcprules into the instance's ACL database.
func (in *smtpdInstance) aclDB(t *testing.T, rules string) string {
	t.Helper()
	db := filepath.Join(in.dir, "tcp.smtp.db")
	c := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	return db
}

// dkimKeyTXT reads opendkim-genkey's zone snippet into one TXT record.
func dkimKeyTXT(t *testing.T, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(string(b), -1) {
		text.WriteString(m[1])
	}
	return dkimpytest.TXT(name, text.String())
}

const memo = "From: Ops <ops@gw.test>\r\nTo: partner@example.org\r\nSubject: Quarterly numbers\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <q4@gw.test>\r\n\r\nThe numbers are attached.\r\n"

// TestSMTPDMilterOpenDKIM plugs OpenDKIM into gw-smtpd as a signing
// milter, as it is plugged into Postfix: mail from the internal network
// leaves signed for gw.test, and dkimpy verifies the signature against
// the key published in the tests' DNS.
func TestSMTPDMilterOpenDKIM(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.org\n"})
	keys := filepath.Join(in.dir, "keys")
	os.MkdirAll(keys, 0o700)
	need(t, "opendkim-genkey")
	if out, err := exec.Command("opendkim-genkey", "-D", keys, "-d", "gw.test", "-s", "m1").CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	sock := filepath.Join(in.dir, "opendkim.sock")
	conf := filepath.Join(in.dir, "opendkim.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("Syslog no\nBackground no\nMode s\nSocket local:%s\nPidFile %s/opendkim.pid\n"+
		"Domain gw.test\nSelector m1\nKeyFile %s/m1.private\nRequireSafeKeys false\nInternalHosts 127.0.0.1\n"+
		"Canonicalization relaxed/relaxed\nUserID root\n", sock, in.dir, keys)), 0o644)
	milterDaemon(t, sock, "opendkim", "-f", "-x", conf)
	os.WriteFile(filepath.Join(in.control, "milters"), []byte("# the signer\nopendkim unix:"+sock+" timeout=10s default=tempfail\n"), 0o644)

	dns := dnstest.Start(t)
	dns.Add(t, dkimKeyTXT(t, filepath.Join(keys, "m1.txt"), "m1._domainkey.gw.test"))

	// The internal network relays a memo to a partner: queued, signed.
	addr := in.standalone(t, nil, "--acl", in.aclDB(t, "127.0.0.1:allow,RELAYCLIENT=\"\"\n"))
	msg := filepath.Join(in.dir, "memo")
	os.WriteFile(msg, []byte(memo), 0o644)
	out := swaks(t, addr, "--from", "ops@gw.test", "--to", "partner@example.org", "--data", msg)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("memo through OpenDKIM: %q\n%s", r, out)
	}
	ms := in.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ms))
	}
	stored := in.body(t, ms[0])
	if !strings.Contains(stored, "DKIM-Signature:") || !strings.Contains(stored, "d=gw.test") {
		t.Fatalf("queued without OpenDKIM's signature:\n%s", stored)
	}
	wire := strings.ReplaceAll(stored, "\n", "\r\n")
	if v := dkimpytest.Run(t, dns.Addr, []byte(wire), "verify"); v != "pass" {
		t.Errorf("dkimpy on the signed memo: %q\n%s", v, stored)
	}
}

// TestSMTPDMilterClamav plugs clamav-milter, on the tests' clamd, into
// gw-smtpd: the infected message is refused at the dot and nothing is
// queued; the clean one is queued with the milter's verdict fields.
func TestSMTPDMilterClamav(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n"})
	const marker = "GW-MILTER-TEST-MARKER-7d1f"
	clamd, err := clamdtest.Start(filepath.Join(in.dir), marker, nil)
	if err != nil {
		t.Skipf("clamd: %v", err)
	}
	t.Cleanup(clamd.Stop)
	sock := filepath.Join(in.dir, "clamav-milter.sock")
	conf := filepath.Join(in.dir, "clamav-milter.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("MilterSocket unix:%s\nClamdSocket unix:%s\nForeground yes\nFixStaleSocket yes\n"+
		"PidFile %s/clamav-milter.pid\nLogFile %s/clamav-milter.log\nOnInfected Reject\nRejectMsg %%v found\nOnClean Accept\nAddHeader Replace\n",
		sock, clamd.Sock, in.dir, in.dir)), 0o644)
	milterDaemon(t, sock, "clamav-milter", "-c", conf)
	os.WriteFile(filepath.Join(in.control, "milters"), []byte("clamav unix:"+sock+" timeout=30s\n"), 0o644)
	addr := in.standalone(t, nil)

	write := func(name, body string) string {
		p := filepath.Join(in.dir, name)
		os.WriteFile(p, []byte("From: a@outside.test\r\nTo: bob@inside.test\r\nSubject: "+name+"\r\n\r\n"+body+"\r\n"), 0o644)
		return p
	}
	// The infected message: clamav-milter's refusal is the reply to the dot.
	out := swaks(t, addr, "--from", "a@outside.test", "--to", "bob@inside.test", "--data", write("infected", "here: "+marker))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "550 5.7.1 "+clamdtest.Signature+" found") {
		t.Fatalf("infected message: %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after the virus was refused", n)
	}
	// The clean one: queued, with the verdict clamav-milter adds.
	out = swaks(t, addr, "--from", "a@outside.test", "--to", "bob@inside.test", "--data", write("clean", "nothing to see"))
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("clean message: %q\n%s", r, out)
	}
	ms := in.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ms))
	}
	if b := in.body(t, ms[0]); !strings.Contains(b, "X-Virus-Status: Clean") || !strings.Contains(b, "X-Virus-Scanned: clamav-milter") {
		t.Errorf("clean message without clamav-milter's fields:\n%s", b)
	}
}

// TestSMTPDMilterDefaultActions: a milter that is down or does not
// answer gets its default action. Each face (a client address in
// tcprules, MILTERS naming its milter) meets one broken milter.
func TestSMTPDMilterDefaultActions(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n"})
	// The silent milter accepts the connection and never says a word.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	_, port, _ := net.SplitHostPort(silent.Addr().String())
	gone := "unix:" + filepath.Join(in.dir, "no-such.sock")
	os.WriteFile(filepath.Join(in.control, "milters"), []byte(
		"down-tempfail "+gone+"\n"+
			"down-reject "+gone+" default=reject\n"+
			"down-accept "+gone+" default=accept\n"+
			"silent inet:"+port+"@127.0.0.1 timeout=1s default=reject\n"), 0o644)
	db := in.aclDB(t, "127.0.0.1:allow,MILTERS=\"down-tempfail\"\n127.0.0.2:allow,MILTERS=\"down-reject\"\n"+
		"127.0.0.3:allow,MILTERS=\"down-accept\"\n127.0.0.4:allow,MILTERS=\"silent\"\n")
	addr := in.standalone(t, nil, "--acl", db)
	msg := filepath.Join(in.dir, "msg")
	os.WriteFile(msg, []byte("From: a@outside.test\r\nTo: bob@inside.test\r\nSubject: hello\r\n\r\nhi\r\n"), 0o644)
	// A milter is first needed at MAIL: its failure's default action is
	// MAIL's reply, as Postfix gives it.
	send := func(from string) (mail, dot string, took time.Duration) {
		start := time.Now()
		out := swaks(t, addr, "--local-interface", from, "--from", "a@outside.test", "--to", "bob@inside.test", "--data", msg)
		return replyTo(out, "MAIL"), replyTo(out, "."), time.Since(start)
	}
	if r, _, _ := send("127.0.0.1"); !strings.HasPrefix(r, "451 4.7.1") {
		t.Errorf("milter down, default tempfail: MAIL %q", r)
	}
	if r, _, _ := send("127.0.0.2"); !strings.HasPrefix(r, "550 5.7.1") {
		t.Errorf("milter down, default reject: MAIL %q", r)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after tempfail and reject", n)
	}
	if _, r, _ := send("127.0.0.3"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("milter down, default accept: %q", r)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Fatalf("%d messages queued after the accept, want 1", n)
	}
	r, _, took := send("127.0.0.4")
	if !strings.HasPrefix(r, "550 5.7.1") || took < time.Second || took > 15*time.Second {
		t.Errorf("silent milter, timeout=1s default=reject: MAIL %q after %v", r, took)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Fatalf("%d messages queued after the timeout, want 1", n)
	}
	log := in.waitLog(t, "milter_failed")
	for _, name := range []string{"down-tempfail", "down-reject", "down-accept", "silent"} {
		if !strings.Contains(log, "milter="+name) {
			t.Errorf("the log does not name the failed milter %s:\n%s", name, log)
		}
	}
}

// TestSMTPDMilterOpenDMARC plugs OpenDMARC into gw-smtpd as a verifying
// milter with RejectFailures: the bank's p=reject is enforced against a
// spoofer, the bank's own mail gets OpenDMARC's Authentication-Results.
// SPF and DKIM are gw-smtpd's (spfpolicy tag, dmarcpolicy none), read
// by OpenDMARC from gw's Authentication-Results field as it reads those
// of Postfix's policy daemons: OpenDMARC's own SPF check (libspf2)
// passes every loopback client. The bank's statement passes by its DKIM
// signature: OpenDMARC 1.4 takes smtp.mailfrom's whole address for the
// domain and never aligns SPF from another's result. It
// asks the system's resolver for DMARC records, so it runs in a mount
// namespace of its own whose /etc/resolv.conf names the tests' unbound
// on port 53 of a loopback address: no query leaves.
func TestSMTPDMilterOpenDMARC(t *testing.T) {
	need(t, "opendmarc")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n", "authservid": "mx.gw.test\n", "spfpolicy": "tag\n", "dmarcpolicy": "none\n"})
	dns := dnstest.StartPort53(t)
	dns.Add(t, `bank.test. TXT "v=spf1 ip4:127.0.0.10 -all"`, `_dmarc.bank.test. TXT "v=DMARC1; p=reject"`)
	key, err := dkim.GenerateKey(dkim.AlgRSA)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.PublicRecord(key)
	dns.Add(t, dkimpytest.TXT(dkim.KeyName("b1", "bank.test"), rec))
	resolv := filepath.Join(in.dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver "+dns.IP()+"\noptions attempts:1 timeout:2\n"), 0o644)
	ignore := filepath.Join(in.dir, "ignore")
	os.WriteFile(ignore, []byte("192.0.2.1\n"), 0o644)
	sock := filepath.Join(in.dir, "opendmarc.sock")
	conf := filepath.Join(in.dir, "opendmarc.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("Socket local:%s\nSyslog false\nBackground false\nPidFile %s/opendmarc.pid\n"+
		"HistoryFile %[2]s/history\nAuthservID mx.gw.test\nRejectFailures true\nSPFSelfValidate false\nIgnoreHosts %[3]s\n", sock, in.dir, ignore)), 0o644)
	milterDaemon(t, sock, "unshare", "-m", "sh", "-c",
		"mount --bind "+resolv+" /etc/resolv.conf && exec opendmarc -f -c "+conf)
	os.WriteFile(filepath.Join(in.control, "milters"), []byte("opendmarc unix:"+sock+" timeout=20s\n"), 0o644)
	addr := in.standalone(t, []string{"GW_DNS=" + dns.Addr})
	msg := filepath.Join(in.dir, "statement")
	os.WriteFile(msg, []byte(bankStatement), 0o644)

	// A spoofer at 127.0.0.11 writes as the bank: refused at the dot.
	out := swaks(t, addr, "--local-interface", "127.0.0.11", "--from", "alerts@bank.test", "--to", "bob@inside.test", "--data", msg)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "550 5.7.1") || !strings.Contains(r, "DMARC") {
		t.Fatalf("spoofed p=reject domain through OpenDMARC: %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after the DMARC refusal", n)
	}
	// The bank's own server at 127.0.0.10, its statement signed: accepted.
	signed := dkimpytest.Run(t, dns.Addr, []byte(bankStatement), "sign", "b1", "bank.test", dkimpytest.KeyFile(t, key), "rsa-sha256") + "\r\n" + bankStatement
	os.WriteFile(msg, []byte(signed), 0o644)
	out = swaks(t, addr, "--local-interface", "127.0.0.10", "--from", "alerts@bank.test", "--to", "bob@inside.test", "--data", msg)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("the bank's own statement: %q\n%s", r, out)
	}
	ms := in.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ms))
	}
	if b := in.body(t, ms[0]); !strings.Contains(b, "Authentication-Results: mx.gw.test; dmarc=pass") {
		t.Errorf("accepted without OpenDMARC's result:\n%s", b)
	}
}
