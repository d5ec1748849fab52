package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dmarc"
	"gw/lib/dmarcreport"
	"gw/lib/dns/dnstest"
)

// TestDMARCReport: results gw recorded yesterday for bank.test are mailed
// by gw-dmarc report through the instance's queue (the real gw-queue)
// to the domain's own rua address and to the outside one that
// authorises it, not to the one that does not; the period is then
// forgotten, and a second run queues nothing.
func TestDMARCReport(t *testing.T) {
	dir := workDir(t)
	control, state, qdir := filepath.Join(dir, "control"), filepath.Join(dir, "state"), filepath.Join(dir, "queue")
	for _, d := range []string{control, state} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(control, "me"), []byte("mx.gw.test\n"), 0o644)
	if out, err := exec.Command(bin("gw-queue"), "--init", qdir).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v: %s", err, out)
	}
	srv := dnstest.Start(t)
	srv.Add(t, `bank.test._report._dmarc.reports.test. TXT "v=DMARC1"`)

	recordYesterday(t, filepath.Join(state, "dmarc.db"))

	run := func() (string, int) {
		cmd := exec.Command(bin("gw-dmarc"), "--control-dir", control, "--state-dir", state, "report")
		cmd.Env = append(os.Environ(), "GW_DNS="+srv.Addr, "GW_QUEUE="+qdir, "QMAILQUEUE=")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return errb.String(), code
	}
	log, code := run()
	if code != 0 || strings.Count(log, "result=queued") != 2 || !strings.Contains(log, "to=x@noauth.test result=refused") {
		t.Fatalf("gw-dmarc report: exit %d\n%s", code, log)
	}
	out, err := exec.Command(bin("gw-qstat"), "--queue", qdir, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("gw-qstat: %v\n%s", err, out)
	}
	for _, want := range []string{"postmaster@mx.gw.test", "dmarc@bank.test", "agg@reports.test"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("queue lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "noauth.test") {
		t.Errorf("report queued for an address that did not authorise it:\n%s", out)
	}
	if log, code := run(); code != 0 || strings.Contains(log, "queued") {
		t.Errorf("second run: exit %d\n%s", code, log)
	}
}

// recordYesterday records in db three results for bank.test of yesterday,
// due for a report to its three rua addresses, and one of today, not due.
func recordYesterday(t *testing.T, db string) {
	t.Helper()
	store, err := dmarcreport.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	row := dmarcreport.Row{SourceIP: "203.0.113.66", HeaderFrom: "bank.test", EnvelopeFrom: "bank.test",
		Disposition: "reject", DKIM: "fail", SPF: "fail",
		SPFResult: dmarcreport.SPFAuth{Domain: "bank.test", Result: "fail"},
		Published: dmarcreport.Published{Domain: "bank.test", ADKIM: "r", ASPF: "r", P: dmarc.PolicyReject, SP: dmarc.PolicyReject, Pct: 100},
		RUA:       []string{"mailto:dmarc@bank.test", "mailto:agg@reports.test", "mailto:x@noauth.test"}}
	for i := 0; i < 3; i++ {
		if err := store.Record(time.Now().Add(-24*time.Hour), row); err != nil {
			t.Fatal(err)
		}
	}
	store.Record(time.Now(), row) // today's: not due
	store.Close()
}

// TestDMARCReportEvery: gw-dmarc report --every, as the instance's
// service runs it, mails the due reports at once from the database --db
// names and stays running for the next day; an interval under a minute
// is a usage error.
func TestDMARCReportEvery(t *testing.T) {
	dir := workDir(t)
	control, qdir, db := filepath.Join(dir, "control"), filepath.Join(dir, "queue"), filepath.Join(dir, "results.db")
	os.MkdirAll(control, 0o755)
	os.WriteFile(filepath.Join(control, "me"), []byte("mx.gw.test\n"), 0o644)
	if out, err := exec.Command(bin("gw-queue"), "--init", qdir).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v: %s", err, out)
	}
	srv := dnstest.Start(t)
	srv.Add(t, `bank.test._report._dmarc.reports.test. TXT "v=DMARC1"`)
	recordYesterday(t, db)

	env := append(os.Environ(), "GW_DNS="+srv.Addr, "GW_QUEUE="+qdir, "QMAILQUEUE=")
	if out, err := exec.Command(bin("gw-dmarc"), "--control-dir", control, "--db", db, "report", "--every", "1s").CombinedOutput(); exitCode(err) != 100 || !strings.Contains(string(out), "at least 1m") {
		t.Errorf("--every 1s: exit %d\n%s", exitCode(err), out)
	}

	logPath := filepath.Join(dir, "dmarc.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	logOf := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := exec.Command(bin("gw-dmarc"), "--control-dir", control, "--db", db, "report", "--every", "24h")
	cmd.Env, cmd.Stderr = env, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	waitFor(t, "the first run to end", time.Minute, func() bool { return strings.Contains(logOf(), "sleeping next=") })
	select {
	case err := <-exited:
		t.Fatalf("gw-dmarc --every exited after its first run: %v\n%s", err, logOf())
	default:
	}
	if log := logOf(); strings.Count(log, "result=queued") != 2 || !strings.Contains(log, "to=x@noauth.test result=refused") {
		t.Errorf("gw-dmarc report --every, first run:\n%s", log)
	}
	out, err := exec.Command(bin("gw-qstat"), "--queue", qdir, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("gw-qstat: %v\n%s", err, out)
	}
	for _, want := range []string{"dmarc@bank.test", "agg@reports.test"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("queue lacks %s:\n%s", want, out)
		}
	}
}
