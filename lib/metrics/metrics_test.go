package metrics

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"gw/lib/logline"
	"gw/lib/queue"
)

// TestCountsWhatIsLogged feeds a logger's events, as the daemons log
// them, to the counters through its tap.
func TestCountsWhatIsLogged(t *testing.T) {
	m := New("gw-test")
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	var out bytes.Buffer
	log := logline.New(&out)
	log.Tap(m.Observe)

	log.Info("accepted", "msg", "s1.1", "size", 10)
	log.Info("refused", "msg", "s1.2", "code", 552, "reason", "databytes")
	log.Warning("refused", "msg", "s1.3", "code", 451, "reason", "qq write error: no space\n")
	log.Info("rcpt", "to", "a@example.com", "result", "reject", "code", 553, "reason", "relay")
	log.Info("tls", "version", "TLS 1.3")
	log.Warning("tls", "result", "failed", "err", "bad record")
	qid := queue.ID(now.Add(-90 * time.Second).UnixMicro()).String()
	log.Info("delivery", "qid", qid, "rcpt", "b@example.net", "tls", "yes", "result", "delivered")
	log.Info("delivery", "qid", qid, "rcpt", "c@example.net", "tls", "no", "result", "deferred")
	log.Warning("verdict", "scan", "x", "action", "reject")

	for _, c := range []struct {
		got  uint64
		want uint64
		what string
	}{
		{m.messages.get("accepted", "none"), 1, "accepted"},
		{m.messages.get("refused", "databytes"), 1, "refused databytes"},
		{m.messages.get("refused", "other"), 1, "refused with an error text as reason"},
		{m.recipients.get("reject", "relay"), 1, "rcpt reject relay"},
		{m.tls.get("ok"), 1, "tls ok"},
		{m.tls.get("failed"), 1, "tls failed"},
		{m.deliveries.get("delivered", "yes"), 1, "delivered over TLS"},
		{m.deliveries.get("deferred", "no"), 1, "deferred in the clear"},
		{m.verdicts.get("reject"), 1, "verdict reject"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	var page strings.Builder
	m.WriteTo(&page)
	for _, want := range []string{
		"# TYPE gw_messages_total counter\n",
		`gw_messages_total{program="gw-test",reason="databytes",result="refused"} 1` + "\n",
		`gw_deliveries_total{program="gw-test",result="delivered",tls="yes"} 1` + "\n",
		"# TYPE gw_queue_delay_seconds histogram\n",
		// 90 seconds: over the 60 s bound, under the 300 s one; the
		// buckets are cumulative.
		`gw_queue_delay_seconds_bucket{program="gw-test",le="60"} 0` + "\n",
		`gw_queue_delay_seconds_bucket{program="gw-test",le="300"} 1` + "\n",
		`gw_queue_delay_seconds_bucket{program="gw-test",le="432000"} 1` + "\n",
		`gw_queue_delay_seconds_bucket{program="gw-test",le="+Inf"} 1` + "\n",
		`gw_queue_delay_seconds_sum{program="gw-test"} 90` + "\n",
		`gw_queue_delay_seconds_count{program="gw-test"} 1` + "\n",
	} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page lacks %q:\n%s", want, page.String())
		}
	}
	if !strings.Contains(out.String(), "info accepted msg=s1.1 size=10\n") {
		t.Errorf("the tap changed what is logged:\n%s", out.String())
	}
}

// TestListenLoopbackOnly: the listener binds to loopback and serves
// /metrics there; another address is refused before anything binds.
func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:9100", ":9100", "example.com:9100"} {
		if l, err := Listen(addr); err == nil {
			l.Close()
			t.Errorf("Listen(%q) bound", addr)
		}
	}
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New("gw-test")
	m.Observe("info", "accepted", nil)
	go m.Serve(l)
	defer l.Close()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if strings.Contains(string(body), "gw_recipients_total") {
		t.Errorf("a family with no series is written:\n%s", body)
	}
	if want := `gw_messages_total{program="gw-test",reason="none",result="accepted"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}

// TestLabelSetEscapes: a value is quoted as the text format asks, and
// le goes last.
func TestLabelSetEscapes(t *testing.T) {
	got := labelSet([][2]string{{"le", "1"}, {"program", "a\"b\\c\nd"}, {"action", "x"}})
	if want := `{action="x",program="a\"b\\c\nd",le="1"}`; got != want {
		t.Errorf("labelSet = %s, want %s", got, want)
	}
}
