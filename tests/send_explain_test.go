package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSendExplain asks, as exim -bt would, where mail to three addresses
// would go from the instance main: one by MX (two hosts, the loopback DNS
// server answering), one handed over QMTP to the secondary instance
// "lists", one to a domain with no mail host. gw-send connects to no mail
// host and queues nothing.
func TestSendExplain(t *testing.T) {
	d := dnsFor(t,
		"example.test. MX 20 mx2.example.test.", "example.test. MX 10 mx1.example.test.",
		"mx1.example.test. A 127.0.0.11", "mx1.example.test. AAAA ::1",
		"mx2.example.test. A 127.0.0.12",
	)
	root := workDir(t)
	for _, args := range [][]string{
		{"create", "main", "--me", "gw.test", "--smtp", "127.0.0.1:2525"},
		{"create", "lists", "--me", "lists.gw.test", "--qmtp", "127.0.0.1:2209"},
		{"route", "lists.example.test", "lists"},
	} {
		if _, errs, code := gwInstanceRun(t, root, args...); code != 0 {
			t.Fatalf("gw-instance %v: exit %d: %s", args, code, errs)
		}
	}
	for name, text := range map[string]string{
		"dnsserver":  d.Addr + "\n",
		"tlspolicy":  "# partners\npartner.test verify match=mx.partner.test\n",
		"smtproutes": "xn--mnchen-3ya.test:127.0.0.1:2526\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "main", "control", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// $ gw-send --root R --instance main --explain ADDRESS...
	cmd := exec.Command(bin("gw-send"), "--root", root, "--instance", "main", "--explain",
		"bob@example.test", "ann@lists.example.test", "nobody@nowhere.test", "eve@partner.test")
	var errs strings.Builder
	cmd.Stderr = &errs
	out, err := cmd.Output()
	// nobody@nowhere.test and eve@partner.test have no mail host: exit
	// 100, as sendmail -bv says an address would bounce, each named on
	// stderr.
	if exitCode(err) != 100 || !strings.Contains(errs.String(), "fatal: mail to nobody@nowhere.test, eve@partner.test would bounce") {
		t.Fatalf("gw-send --explain with an address that would bounce: %v: %s", err, errs.String())
	}
	blocks := strings.Split(string(out), "\n\n")
	if len(blocks) != 4 {
		t.Fatalf("gw-send --explain: %d blocks, want 4:\n%s", len(blocks), out)
	}
	for i, want := range [][]string{
		{
			"instance: main",
			"address: bob@example.test",
			"route: MX over SMTP (no relay in smtproutes, qmtproutes or lmtproutes)",
			"mx: 20 mx2.example.test 127.0.0.12",
			"try: mx1.example.test[127.0.0.11]:25",
			"try: mx2.example.test[127.0.0.12]:25",
			"tls: may (control/tlslevel or its default: no tlspolicy line names example.test); the domain's MTA-STS policy, if it has one, is asked at delivery",
		},
		{
			"address: ann@lists.example.test",
			"route: 127.0.0.1 port 2209 over QMTP (qmtproutes; no MX lookup)",
			"try: 127.0.0.1[127.0.0.1]:2209",
			"tls: none: QMTP has no STARTTLS",
			"next instance: lists (its QMTP listener)",
		},
		{
			"address: nobody@nowhere.test",
			"fails: no mail host for nowhere.test: no MX and no address (#5.1.2)",
		},
		{
			"address: eve@partner.test",
			"tls: verify (control/tlspolicy line 2: partner.test); names mx.partner.test",
		},
	} {
		for _, line := range want {
			if !hasLine(blocks[i], line) {
				t.Errorf("block %d: no line %q in:\n%s", i+1, line, blocks[i])
			}
		}
	}
	// mx1's two addresses, in the resolver's order; tried before mx2.
	if !hasLine(blocks[0], "mx: 10 mx1.example.test 127.0.0.11 ::1") && !hasLine(blocks[0], "mx: 10 mx1.example.test ::1 127.0.0.11") {
		t.Errorf("no mx line for mx1 with both its addresses:\n%s", blocks[0])
	}
	if i, j := strings.Index(blocks[0], "try: mx1.example.test[::1]:25"), strings.Index(blocks[0], "try: mx2."); i < 0 || i > j {
		t.Errorf("the IPv6 address of mx1 is not tried before mx2:\n%s", blocks[0])
	}

	// Every address with somewhere to go: exit 0.
	cmd = exec.Command(bin("gw-send"), "--root", root, "--instance", "main", "--explain", "bob@example.test", "ann@lists.example.test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("gw-send --explain with deliverable addresses: %v: %s", err, out)
	}

	// An SMTPUTF8 address whose domain the route file names in A-labels:
	// the route takes it, shown as written with its A-labels beside it.
	cmd = exec.Command(bin("gw-send"), "--root", root, "--instance", "main", "--explain", "anna@münchen.test")
	out, err = cmd.CombinedOutput()
	for _, line := range []string{
		"domain: münchen.test (in DNS xn--mnchen-3ya.test)",
		"route: 127.0.0.1 port 2526 over SMTP (smtproutes; no MX lookup)",
	} {
		if err != nil || !hasLine(string(out), line) {
			t.Errorf("gw-send --explain anna@münchen.test: %v: no line %q in:\n%s", err, line, out)
		}
	}

	// Not an address: bad usage, nothing looked up.
	cmd = exec.Command(bin("gw-send"), "--root", root, "--instance", "main", "--explain", "bob@exa mple.test\r")
	if out, err := cmd.CombinedOutput(); exitCode(err) != 100 {
		t.Errorf("gw-send --explain with a bad address: %v: %s", err, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
