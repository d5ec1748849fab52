package tests

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// scrape fetches /metrics from addr as Prometheus would.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestMetrics: gw-smtpd and gw-send started with --metrics on loopback
// count what they log: a message accepted and a relay attempt refused at
// RCPT; a delivery with its queue delay. An address off loopback is
// refused before anything binds.
func TestMetrics(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	addr := in.standalone(t, nil, "--metrics", maddr)
	if r := replyTo(swaks(t, addr, "--from", "a@example.net", "--to", "b@example.com"), "."); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("message: %q", r)
	}
	if r := replyTo(swaks(t, addr, "--from", "a@example.net", "--to", "b@elsewhere.example"), "RCPT"); !strings.HasPrefix(r, "553 ") && !strings.HasPrefix(r, "550 ") {
		t.Fatalf("relay attempt: %q", r)
	}
	got := scrape(t, maddr)
	for _, want := range []string{
		`gw_messages_total{program="gw-smtpd",reason="none",result="accepted"} 1`,
		`gw_recipients_total{program="gw-smtpd",reason="not_in_rcpthosts",result="reject"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("gw-smtpd /metrics lacks %s:\n%s", want, got)
		}
	}

	rv := startReceiver(t)
	sin := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf("example.com:[127.0.0.1]:%d", rv.port)})
	saddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sin.cmd = exec.Command(bin("gw-send"), "--queue", sin.queue, "--control-dir", sin.control, "--stop-grace", "2s", "--metrics", saddr)
	sin.cmd.Stderr = sin.log
	if err := sin.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gw-send to start", 5*time.Second, func() bool { return strings.Contains(sin.log.String(), "info start ") })
	qid := sin.inject(t, "a@example.net", []string{"b@example.com"}, "Subject: counted\n\nx\n")
	sin.oneLine(t, "delivery", "qid="+qid, "result=delivered")
	got = scrape(t, saddr)
	for _, want := range []string{
		`gw_deliveries_total{program="gw-send",result="delivered",tls="no"} 1`,
		`gw_queue_delay_seconds_count{program="gw-send"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("gw-send /metrics lacks %s:\n%s", want, got)
		}
	}

	out, err := exec.Command(bin("gw-send"), "--queue", sin.queue, "--metrics", "0.0.0.0:9100").CombinedOutput()
	if exitCode(err) != 100 || !strings.Contains(string(out), "loopback address only") {
		t.Errorf("--metrics 0.0.0.0:9100: %v: %s", err, out)
	}
}
