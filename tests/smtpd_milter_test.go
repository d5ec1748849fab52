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

	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns/dnstest"
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
