package tests

import (
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/tlsrpt"
)

// startPolicyServer is the HTTPS server of mta-sts.<domain> for the
// domains of policies, on loopback, with a certificate of the test CA
// for all their names. It serves each policy as text/plain at
// /.well-known/mta-sts.txt, and counts the fetches.
func startPolicyServer(t *testing.T, pki *testPKI, policies map[string]string) (httpsPort string, fetches func() int) {
	t.Helper()
	var names []string
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	pki.issue(t, "sts", strings.Join(names, ","), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false, x509.ExtKeyUsageServerAuth)
	cert, err := tls.LoadX509KeyPair(pki.file("sts.pem"), pki.file("sts.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	n := make(chan int, 1)
	n <- 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := <-n
		n <- c + 1
		p, ok := policies[strings.TrimPrefix(r.Host, "mta-sts.")]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(p))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return port(l.Addr().String()), func() int { c := <-n; n <- c; return c }
}

// TestSendMTASTS: three domains publish MTA-STS policies (TXT records
// in a loopback unbound, policies on a loopback HTTPS server whose
// certificate the test CA signed), all with the MX mx.test, a Postfix
// whose certificate the CA signed for that name:
//
//	enforce.test   enforce, mx: mx.test            delivered, tls_auth=mta-sts
//	mismatch.test  enforce, mx: mail.mismatch.test deferred 4.7.5, no connection
//	testing.test   testing, mx: *.elsewhere.test   delivered, the mismatch logged
//
// The policies are cached in state/send/mta-sts: a second message to
// enforce.test fetches nothing.
func TestSendMTASTS(t *testing.T) {
	pki := newTestPKI(t)
	httpsPort, fetches := startPolicyServer(t, pki, map[string]string{
		"enforce.test":  "version: STSv1\r\nmode: enforce\r\nmx: mx.test\r\nmax_age: 86400\r\n",
		"mismatch.test": "version: STSv1\nmode: enforce\nmx: mail.mismatch.test\nmax_age: 86400\n",
		"testing.test":  "version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n",
	})
	t.Setenv("GW_MTASTS_PORT", httpsPort)
	pf := startTLSPostfix(t, pki, "good", "may",
		"virtual_alias_domains = enforce.test, mismatch.test, testing.test",
		"virtual_alias_maps = inline:{ @enforce.test=b@gw.test, @mismatch.test=b@gw.test, @testing.test=b@gw.test }")
	var recs []string
	for _, d := range []string{"enforce.test", "mismatch.test", "testing.test"} {
		recs = append(recs, d+". MX 10 mx.test.", `_mta-sts.`+d+`. TXT "v=STSv1; id=20261202"`, "mta-sts."+d+". A 127.0.0.1")
	}
	d := dnsFor(t, append(recs, "mx.test. A 127.0.0.1", `_smtp._tls.enforce.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@enforce.test"`)...)
	in := newSendInstance(t, map[string]string{"smtpport": port(pf.addr), "dnsserver": d.Addr, "tlscafile": pki.file("ca.pem")})
	in.start(t)

	ids := map[string]string{}
	for _, dom := range []string{"enforce.test", "mismatch.test", "testing.test"} {
		ids[dom] = in.inject(t, "a@src.test", []string{"b@" + dom}, "Subject: to "+dom+"\n\nbody\n")
	}
	expect := map[string][]string{
		"enforce.test":  {"result=delivered", "tls=yes", "tls_auth=mta-sts", "tls_sts=enforce"},
		"mismatch.test": {"result=deferred", "status=4.7.5", "tls=no", "MX host mx.test is not among the MTA-STS policy's mx mail.mismatch.test (mode enforce)"},
		"testing.test":  {"result=delivered", "tls=yes", "tls_auth=mta-sts", "tls_sts=testing"},
	}
	for dom, wants := range expect {
		var l []string
		waitFor(t, "the delivery to "+dom, 30*time.Second, func() bool {
			l = in.lines("delivery", "qid="+ids[dom], "result=")
			return len(l) == 1
		})
		for _, want := range wants {
			if !strings.Contains(l[0], want) {
				t.Errorf("%s: the delivery line lacks %q:\n%s", dom, want, l[0])
			}
		}
	}
	if f := in.lines("tls_failed", "qid="+ids["testing.test"], "stage=mta-sts"); len(f) != 1 || !strings.Contains(f[0], "is not among") {
		t.Errorf("testing mode's mismatch not logged: %q", in.lines("tls_failed"))
	}
	waitFor(t, "two messages through Postfix", 20*time.Second, func() bool { return len(pf.inside.transactions()) == 2 })

	if _, err := os.Stat(filepath.Join(in.dir, "state", "send", "mta-sts", "enforce.test.json")); err != nil {
		t.Errorf("the policy is not cached: %v", err)
	}
	before := fetches()
	id := in.inject(t, "a@src.test", []string{"c@enforce.test"}, "Subject: again\n\nbody\n")
	waitFor(t, "the second delivery", 30*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=delivered", "tls_auth=mta-sts")) == 1
	})
	if after := fetches(); after != before {
		t.Errorf("%d fetches for the second message, want the cached policy", after-before)
	}

	// TLS-RPT: today's results, reported now. Only enforce.test asks
	// for reports (its rua is at enforce.test itself, so the report
	// travels through this instance's queue and Postfix to the sink).
	out, err := exec.Command(bin("gw-tlsrpt"), "--queue", in.queue, "--control-dir", in.control,
		"--day", time.Now().UTC().Format("2006-01-02")).CombinedOutput()
	if err != nil {
		t.Fatalf("gw-tlsrpt: %v\n%s", err, out)
	}
	for _, want := range []string{"info tlsrpt_sent domain=enforce.test ", "info tlsrpt_no_rua domain=mismatch.test", "info tlsrpt_no_rua domain=testing.test"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("gw-tlsrpt said %q, lacks %q", out, want)
		}
	}
	var report string
	waitFor(t, "the report through Postfix", 30*time.Second, func() bool {
		for _, tx := range pf.inside.transactions() {
			if strings.Contains(tx, "TLS-Report-Domain: enforce.test") {
				report = tx
				return true
			}
		}
		return false
	})
	rep := decodeTLSReport(t, report)
	if len(rep.Policies) != 1 || rep.Policies[0].Policy.Type != "sts" || rep.Policies[0].Summary.Success < 1 || rep.Policies[0].Summary.Failure != 0 {
		// sessions are counted, and the second message may have gone
		// over the first one's session
		t.Errorf("report %+v, want one sts policy with successful sessions only", rep)
	}
	if !strings.Contains(strings.Join(rep.Policies[0].Policy.String, "\n"), "mode: enforce") {
		t.Errorf("policy-string %q", rep.Policies[0].Policy.String)
	}
	if _, err := os.Stat(filepath.Join(in.dir, "state", "send", "tlsrpt", time.Now().UTC().Format("2006-01-02")+".jsonl.sent")); err != nil {
		t.Errorf("the day's results are not marked sent: %v", err)
	}
}

// decodeTLSReport takes the gzipped JSON out of a report message.
func decodeTLSReport(t *testing.T, msg string) *tlsrpt.Report {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no application/tlsrpt+gzip part: %v", err)
		}
		if p.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			continue
		}
		if !strings.HasSuffix(p.FileName(), "!enforce.test!"+fmt.Sprint(time.Now().UTC().Truncate(24*time.Hour).Unix())+"!"+
			fmt.Sprint(time.Now().UTC().Truncate(24*time.Hour).Add(24*time.Hour-time.Second).Unix())+".json.gz") {
			t.Errorf("file name %q", p.FileName())
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		var rep tlsrpt.Report
		if err := json.NewDecoder(zr).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return &rep
	}
}
