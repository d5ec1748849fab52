package scenarios

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dmarc"
	"gw/lib/dmarcreport"
	"gw/lib/dns/dnstest"
)

// TestDMARCQuarantineAndReports is the Internet face enforcing DMARC under
// runsvdir, with aggregate reports on. A spoof of shop.test, whose policy
// is p=quarantine, is answered 250 and held in the instance's quarantine,
// not queued; gw-scan quarantine lists it, and released it reaches the
// mail host with its mark. The instance's dmarc service, written by
// gw-instance because the listener records results, mails the report of
// yesterday's results to shop.test's rua address as soon as it starts.
func TestDMARCQuarantineAndReports(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	dns := dnstest.Start(t)
	dns.Add(t, `shop.test. TXT "v=spf1 ip4:127.0.0.11 -all"`,
		`_dmarc.shop.test. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test"`)
	mxAddr := freePort(t, "127.0.0.1")
	mailhost := startSink(t, filepath.Join(dir, "mailhost"), freePort(t, "127.0.0.20"))
	shop := startSink(t, filepath.Join(dir, "shop"), freePort(t, "127.0.0.23"))

	d := filepath.Join(root, "mx")
	gwInstance(t, root, "create", "mx", "--smtp", mxAddr, "--me", "mx.example.test",
		"--rcpthosts", "example.test", "--relay", lanClient, "--env", "GW_DNS="+dns.Addr)
	write(t, d, map[string]string{
		"control/authservid":  "mx.example.test\n",
		"control/dmarcpolicy": "enforce\n",
		"control/smtproutes":  "example.test:" + mailhost.addr + "\nshop.test:" + shop.addr + "\n",
	})
	gwInstance(t, root, "listen", "mx", "smtpd", "smtp", mxAddr, "--", "--dmarc-reports", "state/smtpd/dmarc.db")
	gwInstance(t, root, "check", "mx")

	// Yesterday's results, as the listener would have recorded them.
	store, err := dmarcreport.Open(filepath.Join(d, "state", "smtpd", "dmarc.db"))
	if err != nil {
		t.Fatal(err)
	}
	row := dmarcreport.Row{SourceIP: "192.0.2.66", HeaderFrom: "shop.test", EnvelopeFrom: "shop.test",
		Disposition: "quarantine", DKIM: "fail", SPF: "fail",
		SPFResult: dmarcreport.SPFAuth{Domain: "shop.test", Result: "fail"},
		Published: dmarcreport.Published{Domain: "shop.test", ADKIM: "r", ASPF: "r", P: dmarc.PolicyQuarantine, SP: dmarc.PolicyQuarantine, Pct: 100},
		RUA:       []string{"mailto:dmarc@shop.test"}}
	if err := store.Record(time.Now().Add(-24*time.Hour), row); err != nil {
		t.Fatal(err)
	}
	store.Close()

	sup := startSupervisor(t, "runit", dir)
	gwInstance(t, root, "link", "mx", sup.scan)
	sup.up(t, 4) // queued, send, smtpd and dmarc
	waitFor(t, "the listener", 10*time.Second, func() bool { return listening(mxAddr) })

	// The report service ran at once: yesterday's report reached shop.test.
	waitFor(t, "the aggregate report at shop.test", time.Minute, func() bool { return len(shop.messages(t)) > 0 })
	rep := shop.messages(t)
	if len(rep) != 1 || strings.Join(rep[0].rcpts, ",") != "dmarc@shop.test" || rep[0].from != "postmaster@mx.example.test" ||
		len(rep[0].header("Subject")) == 0 || !strings.HasPrefix(rep[0].header("Subject")[0], "Report Domain: shop.test Submitter: mx.example.test") {
		t.Fatalf("at shop.test, want one aggregate report: %+v", rep)
	}

	// The spoof: accepted, held, not queued.
	mustSend(t, mxAddr, "sales@shop.test", "alice@example.test", "your order", "--local-interface", internetClient)
	if n := queued(t, root, "mx"); n != 0 {
		t.Fatalf("%d messages queued after a p=quarantine spoof", n)
	}
	scan := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin("gw-scan"), append([]string{"--control-dir", filepath.Join(d, "control")}, args...)...)
		cmd.Env = []string{"GW_QUEUE=" + filepath.Join(d, "queue")}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gw-scan %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	list := scan("quarantine", "list")
	f := strings.Fields(list)
	if strings.Contains(list, "\n") || len(f) < 5 || f[3] != "from=<sales@shop.test>" || f[4] != "to=<alice@example.test>" ||
		!strings.Contains(list, `reason="dmarc: dmarc=fail, policy quarantine`) {
		t.Fatalf("gw-scan quarantine list, want the spoof held by DMARC:\n%s", list)
	}
	if got := mailhost.bySubject(t, "your order"); len(got) != 0 {
		t.Fatalf("the held spoof reached the mail host: %+v", got)
	}

	// The administrator releases it: delivered once, marked.
	scan("quarantine", "release", f[0])
	waitFor(t, "the released message at the mail host", time.Minute, func() bool { return len(mailhost.bySubject(t, "your order")) > 0 })
	got := mailhost.bySubject(t, "your order")
	if len(got) != 1 || len(got[0].header("X-Gw-Quarantine")) != 1 || !strings.HasPrefix(got[0].header("X-Gw-Quarantine")[0], "dmarc; dmarc=fail") {
		t.Errorf("released: %+v", got)
	}
	if list := scan("quarantine", "list"); list != "" {
		t.Errorf("the quarantine after the release:\n%s", list)
	}
}
