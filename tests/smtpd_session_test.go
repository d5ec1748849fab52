package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gw/lib/dns/dnstest"
	"gw/tests/internal/clamdtest"
)

// sessionInstance is an instance made by gw-instance create, as an admin
// has one, with the rules of the session tests:
//
//	192.0.2.10:allow,RELAYCLIENT=""   line 3, the relay client
//	198.51.100.66:deny                line 4
//	:allow                            line 5, every other client
type sessionInstance struct {
	root, dir, acl string
	dns            string // GW_DNS when the test runs a DNS server
}

func newSessionInstance(t *testing.T, control map[string]string) *sessionInstance {
	t.Helper()
	root := workDir(t)
	in := &sessionInstance{root: root, dir: filepath.Join(root, "main")}
	if out, err := exec.Command(bin("gw-instance"), "--root", root, "create", "main", "--me", "gw.example.net",
		"--rcpthosts", "example.com", "--smtp", "127.0.0.1:2525", "--bin-dir", binDir).CombinedOutput(); err != nil {
		t.Fatalf("gw-instance create: %v\n%s", err, out)
	}
	for name, body := range control {
		if err := os.WriteFile(filepath.Join(in.dir, "control", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rules := "# the session tests' rules\n\n192.0.2.10:allow,RELAYCLIENT=\"\"\n198.51.100.66:deny\n:allow\n"
	src := filepath.Join(in.dir, "acl", "tcp.smtp")
	if err := os.WriteFile(src, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	in.acl = src + ".db"
	cmd := exec.Command(bin("gw-tcprules"), in.acl, in.acl+".tmp")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	return in
}

// session runs gw-smtpd --test-session for the client ip on script and
// returns its transcript (stdout); the log (stderr) goes to the test's
// log on failure.
func (in *sessionInstance) session(t *testing.T, ip, script string, extra ...string) string {
	t.Helper()
	out, _, _ := in.sessionAs(t, nil, bin("gw-smtpd"), ip, script, extra...)
	return out
}

// sessionAs runs prog --test-session with attr (nil: as the test) and
// returns its stdout and stderr; with attr set, its failure is the
// caller's to judge.
func (in *sessionInstance) sessionAs(t *testing.T, attr *syscall.SysProcAttr, prog, ip, script string, extra ...string) (string, string, error) {
	t.Helper()
	args := append([]string{"--root", in.root, "--instance", "main", "--test-session", "--client", ip}, extra...)
	cmd := exec.Command(prog, args...)
	cmd.SysProcAttr = attr
	cmd.Env = os.Environ() // GW_DNS: the tests' loopback port (e2e.LoopbackDNS), or
	if in.dns != "" {
		cmd.Env = append(cmd.Env, "GW_DNS="+in.dns) // the test's own server
	}
	cmd.Stdin = strings.NewReader(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("$ gw-smtpd %s\n%s--- stderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
		}
	})
	if err != nil && attr == nil {
		t.Fatalf("gw-smtpd --test-session: %v\n%s", err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// transcript checks that out holds, in this order, lines starting with
// each of want: the dialogue as the admin reads it.
func transcript(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && !strings.HasPrefix(lines[i], w) {
			i++
		}
		if i == len(lines) {
			t.Errorf("the transcript has no line %q after the ones before it:\n%s", w, out)
			return
		}
		i++
	}
}

// instanceFiles is every file under dir, with its size, mode, time and
// content: a session test must change none of them.
func instanceFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		files[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("the session test changed %s: %q, was %q", p, v, before[p])
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("the session test removed %s", p)
		}
	}
}

// TestSMTPDSessionTest runs scripted sessions through an instance's
// policy, as exim -bh: a relay client named by its rule, a stranger
// refused relaying, a DNSBL-listed address refused with the zone named
// (a real DNS server on loopback), a denied address dropped by its rule;
// then the queue is empty and not a file of the instance changed.
func TestSMTPDSessionTest(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "7.2.0.192.bl.example. A 127.0.0.2", `7.2.0.192.bl.example. TXT "192.0.2.7 sends spam"`)
	in := newSessionInstance(t, map[string]string{"rblzones": "-bl.example\n"})
	in.dns = srv.Addr
	before := instanceFiles(t, in.dir)

	// The relay client: its rule, RELAYCLIENT, relaying to any domain;
	// a message taken to the end, then not queued.
	out := in.session(t, "192.0.2.10", "EHLO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\nSubject: hi\n\nhello\n.\nQUIT\n")
	transcript(t, out,
		">>> session test: nothing is queued",
		`>>> acl: `+in.acl+`: line 3 decides (key "192.0.2.10"): 192.0.2.10:allow,RELAYCLIENT=""`,
		`>>> acl: sets RELAYCLIENT=""`,
		">>> env: RELAYCLIENT is set: the client may relay to any domain",
		"220 gw.example.net ESMTP",
		"250-gw.example.net",
		"250 2.0.0 ok", // MAIL
		">>> relay: allowed to any domain: RELAYCLIENT is set for this client",
		">>> dnsbl: not consulted: the client relays",
		"250 2.0.0 ok", // RCPT
		"354 ",
		">>> scan: none",
		">>> queue: not queued (session test): ",
		"250 2.0.0 ok ",
		"221 2.0.0 ")

	// A stranger: example.com is accepted, example.net is not relayed.
	out = in.session(t, "203.0.113.5", "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.com>\nRCPT TO:<b@example.net>\nQUIT\n")
	transcript(t, out,
		`>>> acl: `+in.acl+`: line 5 decides (key ""): :allow`,
		">>> env: RELAYCLIENT is not set",
		"220 ",
		"250 ", // HELO
		"250 2.0.0 ok",
		">>> relay: example.com is accepted here (rcpthosts/morercpthosts)",
		">>> dnsbl: 203.0.113.5 is not listed in any zone of control/rblzones",
		"250 2.0.0 ok",
		">>> relay: refused: example.net is not in rcpthosts/morercpthosts and the client may not relay",
		"553 5.7.1 ",
		"221 ")

	// A listed address: refused at RCPT, the zone named.
	out = in.session(t, "192.0.2.7", "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.com>\nQUIT\n")
	transcript(t, out,
		">>> relay: example.com is accepted here",
		`>>> dnsbl: 192.0.2.7 is listed in zone bl.example ("192.0.2.7 sends spam"): refused`,
		"553 5.7.1 192.0.2.7 sends spam",
		"221 ")

	// A denied address: tcpserver would drop it, so no reply at all.
	out = in.session(t, "198.51.100.66", "HELO me\nQUIT\n")
	transcript(t, out, `>>> acl: `+in.acl+`: line 4 decides (key "198.51.100.66"): 198.51.100.66:deny`,
		">>> acl: the rule denies: tcpserver drops the connection without a reply")
	if strings.Contains(out, "220 ") {
		t.Errorf("a denied client was greeted:\n%s", out)
	}

	// --env tries a rule before it is written: the stranger relays.
	out = in.session(t, "203.0.113.5", "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nQUIT\n", "--env", "RELAYCLIENT=")
	transcript(t, out, `>>> env: RELAYCLIENT="" set by --env, over the rule's`,
		">>> relay: allowed to any domain", "250 2.0.0 ok", "221 ")

	// Bad usage: a clear error, exit 100, no session.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--test-session"}, `--test-session needs --client IP: "" is not an address`},
		{[]string{"--test-session", "--client", "192.0.2.300"}, `"192.0.2.300" is not an address`},
		{[]string{"--test-session", "--client", "192.0.2.1", "--env", "RELAYCLIENT"}, `--env "RELAYCLIENT": not NAME=VALUE`},
		{[]string{"--test-session", "--client", "192.0.2.1", "--root", in.root, "--instance", "nosuch"}, "no instance nosuch under " + in.root},
		{[]string{"--client", "192.0.2.1"}, "go with --test-session"},
	} {
		cmd := exec.Command(bin("gw-smtpd"), c.args...)
		cmd.Stdin = strings.NewReader("HELO me\nQUIT\n")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 100 || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "220 ") {
			t.Errorf("gw-smtpd %s: %v\n%s", strings.Join(c.args, " "), err, out)
		}
	}

	// Nothing queued, nothing written.
	qstat, err := exec.Command(bin("gw-qstat"), "--root", in.root, "--instance", "main").CombinedOutput()
	if err != nil || !strings.Contains(string(qstat), "messages in queue: 0") {
		t.Errorf("gw-qstat after the session tests: %v\n%s", err, qstat)
	}
	sameFiles(t, before, instanceFiles(t, in.dir))
}

// TestSMTPDSessionTestUnprivileged: an admin who is not root but may
// read the control directory and the rules (the listener's group) runs
// the session test; one who may not read the rules is told which file.
func TestSMTPDSessionTestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root, to start the session test as another user")
	}
	in := newSessionInstance(t, nil)
	prog := copyProgram(t, in.root, "gw-smtpd", 0o755)
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	script := "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nQUIT\n"

	out, errOut, err := in.sessionAs(t, nobody, prog, "203.0.113.5", script)
	if err == nil || !strings.Contains(errOut, in.acl+": permission denied") || strings.Contains(out, "220 ") {
		t.Errorf("a user who may not read %s: %v\n%s%s", in.acl, err, out, errOut)
	}
	if err := os.Chown(in.acl, 0, 65534); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = in.sessionAs(t, nobody, prog, "203.0.113.5", script)
	if err != nil {
		t.Fatalf("as the listener's group: %v\n%s%s", err, out, errOut)
	}
	transcript(t, out, `>>> acl: `+in.acl+`: line 5 decides`, "220 ", "250 ", "250 2.0.0 ok",
		">>> relay: refused: example.net is not in rcpthosts/morercpthosts", "553 5.7.1 ", "221 ")
}

// TestSMTPDSessionTestScan: on a face whose mail goes through gw-scan and
// clamav-milter, both on the instance's real clamd, a message with the
// virus marker is refused at the end of DATA by the milter, or, for a
// client whose MILTERS names none, by the scan, the engine and the virus
// named; a clean one passes both and gets its 250. Nothing is queued or
// held in the quarantine.
func TestSMTPDSessionTestScan(t *testing.T) {
	need(t, "clamd")
	dir := workDir(t)
	c, err := clamdtest.Start(dir, markerVirus, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	sock := filepath.Join(dir, "clamav-milter.sock")
	conf := filepath.Join(dir, "clamav-milter.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("MilterSocket unix:%s\nClamdSocket unix:%s\nForeground yes\nFixStaleSocket yes\n"+
		"PidFile %s/clamav-milter.pid\nLogFile %s/clamav-milter.log\nOnInfected Reject\nRejectMsg %%v found\nOnClean Accept\nAddHeader Replace\n",
		sock, c.Sock, dir, dir)), 0o644)
	milterDaemon(t, sock, "clamav-milter", "-c", conf)
	in := newSessionInstance(t, map[string]string{"clamd": c.Sock + "\n", "milters": "clamav unix:" + sock + " timeout=30s\n"})
	if out, err := exec.Command(bin("gw-instance"), "--root", in.root, "scan", "main").CombinedOutput(); err != nil {
		t.Fatalf("gw-instance scan: %v\n%s", err, out)
	}
	before := instanceFiles(t, in.dir)
	head := "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<u@example.com>\nDATA\nSubject: test\n\n"
	infected := head + "here it is: " + markerVirus + "\n.\nQUIT\n"

	// The milter sees it first and refuses it.
	out := in.session(t, "203.0.113.5", infected)
	transcript(t, out,
		"220 ", "250 ", "250 2.0.0 ok", "250 2.0.0 ok", "354 ",
		">>> milters clamav: refused by clamav: 550 "+markerSig+" found",
		"550 5.7.1 "+markerSig+" found",
		"221 ")

	// Without milters (MILTERS empty), gw-scan's clamd refuses it.
	out = in.session(t, "203.0.113.5", infected, "--env", "MILTERS=")
	transcript(t, out,
		">>> injector: "+filepath.Join(binDir, "gw-scan")+" (not started)",
		">>> scan: gw-scan checks each message with clamd, MIME rules",
		"220 ", "250 ", "250 2.0.0 ok", "250 2.0.0 ok", "354 ",
		">>> log: info verdict scan=",
		">>> scan: reject: virus "+markerSig+": the message is refused (554)",
		"554 ",
		"221 ")
	if !strings.Contains(out, "clamd="+markerSig) {
		t.Errorf("the verdict line does not name clamd's finding:\n%s", out)
	}

	// A clean message passes the milter and the scan.
	out = in.session(t, "203.0.113.5", head+"nothing to see\n.\nQUIT\n")
	transcript(t, out, "354 ",
		">>> milters clamav: accepted, 1 change(s)",
		">>> log: info verdict scan=", ">>> scan: clean: delivered to every recipient",
		">>> queue: not queued (session test): ", "250 2.0.0 ok ", "221 ")

	sameFiles(t, before, instanceFiles(t, in.dir))
}

// TestSMTPDSessionTestGreylist: on a face that greylists, a stranger's
// new triplet is deferred, and the greylist file is neither created nor
// written: the session test only reads it.
func TestSMTPDSessionTestGreylist(t *testing.T) {
	in := newSessionInstance(t, nil)
	if out, err := exec.Command(bin("gw-instance"), "--root", in.root, "listen", "main", "smtpd", "smtp", "127.0.0.1:2525", "--",
		"--greylist", "state/greylist.db").CombinedOutput(); err != nil {
		t.Fatalf("gw-instance listen: %v\n%s", err, out)
	}
	before := instanceFiles(t, in.dir)
	out := in.session(t, "203.0.113.5", "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.com>\nQUIT\n")
	transcript(t, out, "220 ", "250 ", "250 2.0.0 ok",
		">>> relay: example.com is accepted here",
		">>> greylist: no triplet recorded yet: new, deferred (nothing recorded: session test)",
		">>> greylist: the triplet (203.0.113.5, a@example.org, b@example.com) is new or too young: deferred",
		"451 4.7.1 ",
		"221 ")
	// The relay client is not greylisted.
	out = in.session(t, "192.0.2.10", "HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.com>\nQUIT\n")
	transcript(t, out, ">>> relay: allowed to any domain", ">>> greylist: not applied: the client relays", "250 2.0.0 ok", "221 ")
	if _, err := os.Stat(filepath.Join(in.dir, "state", "greylist.db")); !os.IsNotExist(err) {
		t.Errorf("the session test created the greylist: %v", err)
	}
	sameFiles(t, before, instanceFiles(t, in.dir))
}

// TestSMTPDSessionTestDMARCHold: a spoof of a p=quarantine domain, on a
// face enforcing DMARC, is said to be held in the quarantine and
// answered 250; the session test holds nothing.
func TestSMTPDSessionTestDMARCHold(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, `shop.test. TXT "v=spf1 ip4:192.0.2.11 -all"`, `_dmarc.shop.test. TXT "v=DMARC1; p=quarantine"`)
	in := newSessionInstance(t, map[string]string{"dmarcpolicy": "enforce\n", "authservid": "mx.gw.test\n"})
	in.dns = srv.Addr
	before := instanceFiles(t, in.dir)
	out := in.session(t, "203.0.113.5", "HELO me\nMAIL FROM:<sales@shop.test>\nRCPT TO:<u@example.com>\nDATA\n"+
		"From: <sales@shop.test>\nSubject: your order\n\nhi\n.\nQUIT\n")
	transcript(t, out, "220 ", "250 ", "250 2.0.0 ok", "250 2.0.0 ok", "354 ",
		">>> dmarc: would be held in the quarantine for 1 recipient(s) (not held: session test)",
		"250 2.0.0 ok",
		"221 ")
	sameFiles(t, before, instanceFiles(t, in.dir))
}
