package dmarcreport

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
	"gw/lib/spf"
)

// TestReportRoundTrip: results of real evaluations are counted by day,
// a finished day becomes a report whose mail Python's email and XML
// readers take apart to the same counts, and the §7.1 check lets through
// only the destinations that are the domain's own or that authorise it.
func TestReportRoundTrip(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		`_dmarc.bank.test. TXT "v=DMARC1; p=reject; pct=100; rua=mailto:dmarc@bank.test,mailto:agg@reports.test!10m,mailto:x@noauth.test,https://r.test/"`,
		`bank.test._report._dmarc.reports.test. TXT "v=DMARC1"`,
		`_dmarc.quiet.test. TXT "v=DMARC1; p=none"`,
	)
	srv.Fail("_report._dmarc.dead.test.")
	ctx := context.Background()
	e := &dmarc.Evaluator{Resolver: dns.New(srv.Addr)}
	store, err := Open(filepath.Join(t.TempDir(), "dmarc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	day := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	good := spf.Result{Domain: "bank.test", Value: spf.Pass}
	bad := spf.Result{Domain: "bank.test", Value: spf.Fail}
	sigs := []dkim.Result{{Domain: "bank.test", Selector: "b1", Value: dkim.Pass}}
	for i, m := range []struct {
		ip     string
		spf    spf.Result
		sigs   []dkim.Result
		action dmarc.Action
	}{
		{"192.0.2.10", good, sigs, dmarc.Accept},
		{"192.0.2.10", good, sigs, dmarc.Accept},
		{"203.0.113.66", bad, nil, dmarc.Reject},
	} {
		r := e.Evaluate(ctx, "bank.test", m.spf, m.sigs)
		row, ok := RowOf(m.ip, r, m.spf, m.sigs, m.action, "")
		if !ok {
			t.Fatalf("message %d: no row for %+v", i, r)
		}
		if err := store.Record(day, row); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := RowOf("192.0.2.1", e.Evaluate(ctx, "quiet.test", good, nil), good, nil, dmarc.Accept, ""); ok {
		t.Error("a row for a domain without rua=")
	}
	if due, _ := store.Due(day); len(due) != 0 {
		t.Errorf("today's results due: %v", due)
	}
	due, err := store.Due(day.Add(24 * time.Hour))
	if err != nil || len(due) != 1 || due[0].Domain != "bank.test" {
		t.Fatalf("due = %v, %v", due, err)
	}
	rows, err := store.Rows(due[0])
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows = %+v, %v", rows, err)
	}
	rp := Reporter{Org: "mx.gw.test", Email: "postmaster@mx.gw.test"}
	rep, err := rp.Build(due[0], rows)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Filename != "mx.gw.test!bank.test!1796083200!1796169599.xml.gz" {
		t.Errorf("filename %s", rep.Filename)
	}
	msg := rp.Message(rep, "bank.test", "dmarc@bank.test", day.Add(25*time.Hour))
	script := `
import sys, gzip, email, xml.etree.ElementTree as ET
m = email.message_from_binary_file(sys.stdin.buffer)
print(m["Subject"])
for part in m.walk():
    if part.get_content_type() == "application/gzip":
        print(part.get_filename())
        root = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
        print(root.findtext("policy_published/domain"), root.findtext("policy_published/p"), root.findtext("policy_published/pct"))
        for r in root.findall("record"):
            print(r.findtext("row/source_ip"), r.findtext("row/count"), r.findtext("row/policy_evaluated/disposition"),
                  r.findtext("row/policy_evaluated/dkim"), r.findtext("row/policy_evaluated/spf"),
                  r.findtext("auth_results/spf/result"), r.findtext("auth_results/dkim/result"))
`
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Stdin = strings.NewReader(string(msg))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := "Report Domain: bank.test Submitter: mx.gw.test Report-ID: <" + rep.ID + ">\n" +
		rep.Filename + "\n" +
		"bank.test reject 100\n"
	got := string(out)
	if !strings.HasPrefix(got, want) ||
		!strings.Contains(got, "192.0.2.10 2 none pass pass pass pass\n") ||
		!strings.Contains(got, "203.0.113.66 1 reject fail fail fail None\n") {
		t.Errorf("python read:\n%s\nwant to start:\n%s", got, want)
	}

	dests := Destinations(ctx, dns.New(srv.Addr), "bank.test", rep.RUA)
	verdict := map[string]string{}
	for _, d := range dests {
		verdict[d.Address] = d.Refused
	}
	if len(dests) != 4 || verdict["dmarc@bank.test"] != "" || verdict["agg@reports.test"] != "" ||
		!strings.Contains(verdict["x@noauth.test"], "does not authorise") || verdict["https://r.test/"] == "" {
		t.Errorf("destinations: %+v", dests)
	}
	if dests[1].MaxSize != 10<<20 {
		t.Errorf("!10m = %d", dests[1].MaxSize)
	}
	if d := Destinations(ctx, dns.New(srv.Addr), "bank.test", []string{"mailto:a@dead.test"}); !d[0].Retry {
		t.Errorf("DNS failing: %+v", d)
	}
	if err := store.Done(due[0]); err != nil {
		t.Fatal(err)
	}
	if due, _ := store.Due(day.Add(48 * time.Hour)); len(due) != 0 {
		t.Errorf("after Done: %v", due)
	}
}
