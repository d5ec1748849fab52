package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecordReadBuild(t *testing.T) {
	dir := t.TempDir()
	rc := &Recorder{Dir: dir}
	day := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, r := range []Result{
		{PolicyType: PolicySTS, PolicyDomain: "a.example", MXHost: "mx.a.example", Success: true},
		{PolicyType: PolicySTS, PolicyDomain: "a.example", MXHost: "mx.a.example", Success: true},
		{PolicyType: PolicySTS, PolicyDomain: "a.example", MXHost: "mx2.a.example", ReceivingIP: "192.0.2.1", ResultType: CertExpired, Reason: "x"},
		{PolicyType: PolicySTS, PolicyDomain: "a.example", MXHost: "mx2.a.example", ReceivingIP: "192.0.2.1", ResultType: CertExpired, Reason: "x"},
		{PolicyType: PolicyTLSA, PolicyDomain: "B.example", MXHost: "mx.b.example", ResultType: DNSSECInvalid},
	} {
		r.Time = day.Unix()
		if err := rc.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(filepath.Join(dir, "2026-12-01.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n{\"policy_type\":\"sts\"}\n")
	f.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "2026-12-01.jsonl"))
	res, bad, err := Read(bytes.NewReader(b))
	if err != nil || len(res) != 5 || bad != 2 {
		t.Fatalf("Read: %d results, %d bad, %v", len(res), bad, err)
	}
	reps := Build(day, "gw.example", "postmaster@gw.example", res)
	a := reps["a.example"]
	if a == nil || len(a.Policies) != 1 || a.Policies[0].Summary != (Summary{Success: 2, Failure: 2}) {
		t.Fatalf("a.example: %+v", a)
	}
	want := []Detail{{ResultType: CertExpired, ReceivingMX: "mx2.a.example", ReceivingIP: "192.0.2.1", Count: 2, Reason: "x"}}
	if !reflect.DeepEqual(a.Policies[0].Details, want) {
		t.Errorf("details %+v", a.Policies[0].Details)
	}
	if a.DateRange != (DateRange{"2026-12-01T00:00:00Z", "2026-12-01T23:59:59Z"}) {
		t.Errorf("date range %+v", a.DateRange)
	}
	if b := reps["b.example"]; b == nil || b.Policies[0].Policy.Type != PolicyTLSA || b.Policies[0].Summary.Failure != 1 {
		t.Errorf("b.example: %+v", b)
	}
	msg, err := Message(a, "a.example", "postmaster@gw.example", "r@a.example", day)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"TLS-Report-Domain: a.example\n", "TLS-Report-Submitter: gw.example\n", "report-type=\"tlsrpt\"",
		"Content-Type: application/tlsrpt+gzip\n", "filename=\"gw.example!a.example!1796083200!1796169599.json.gz\""} {
		if !bytes.Contains(msg, []byte(h)) {
			t.Errorf("message lacks %q", h)
		}
	}
	// the attachment is the report
	_, enc, _ := strings.Cut(string(msg), ".json.gz\"\n\n")
	enc, _, _ = strings.Cut(enc, "\n--")
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(enc, "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.NewDecoder(zr).Decode(&back); err != nil || back.ReportID != a.ReportID {
		t.Errorf("attachment: %+v %v", back, err)
	}
}

func TestParseRUA(t *testing.T) {
	for txt, want := range map[string][]string{
		"v=TLSRPTv1; rua=mailto:r@example.com":                             {"r@example.com"},
		"v=TLSRPTv1;rua=mailto:a@x.example,https://x.example/r,mailto:b@y": {"a@x.example", "b@y"},
		"v=TLSRPTv1; rua=mailto:bad address@x":                             nil,
		"v=TLSRPTv2; rua=mailto:r@example.com":                             nil,
	} {
		got, _ := ParseRUA(txt)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseRUA(%q) = %q, want %q", txt, got, want)
		}
	}
}

// FuzzRead: gw-send's results file read as if anyone wrote it.
func FuzzRead(f *testing.F) {
	f.Add("{\"time\":1,\"policy_type\":\"sts\",\"policy_domain\":\"a.example\",\"success\":true}\n")
	f.Add("garbage\n{}\n")
	f.Fuzz(func(t *testing.T, s string) {
		res, _, _ := Read(strings.NewReader(s))
		for _, r := range res {
			if r.PolicyDomain == "" || r.PolicyType == "" {
				t.Fatalf("took %+v", r)
			}
		}
		Build(time.Unix(0, 0), "o", "c", res)
	})
}

// TestRecordNoLinks: a link in place of the day's file, to a file of the
// queue's (its journal, say), makes the record fail; nothing is appended
// to what the link points to.
func TestRecordNoLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "journal")
	os.WriteFile(victim, []byte("gwqjnl1\n"), 0o640)
	at := time.Unix(1_800_000_000, 0)
	os.Symlink(victim, filepath.Join(dir, Day(at)+".jsonl"))
	rc := &Recorder{Dir: dir}
	if err := rc.Record(Result{Time: at.Unix(), PolicyType: PolicySTS, PolicyDomain: "example.com", Success: true}); err == nil {
		t.Error("a result recorded through a link")
	}
	if b, _ := os.ReadFile(victim); string(b) != "gwqjnl1\n" {
		t.Errorf("appended through the link: %q", b)
	}
}
