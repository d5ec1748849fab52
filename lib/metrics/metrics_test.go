package metrics

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.messages.WithLabelValues("accepted", "none")), 1, "accepted"},
		{testutil.ToFloat64(m.messages.WithLabelValues("refused", "databytes")), 1, "refused databytes"},
		{testutil.ToFloat64(m.messages.WithLabelValues("refused", "other")), 1, "refused with an error text as reason"},
		{testutil.ToFloat64(m.recipients.WithLabelValues("reject", "relay")), 1, "rcpt reject relay"},
		{testutil.ToFloat64(m.tls.WithLabelValues("ok")), 1, "tls ok"},
		{testutil.ToFloat64(m.tls.WithLabelValues("failed")), 1, "tls failed"},
		{testutil.ToFloat64(m.deliveries.WithLabelValues("delivered", "yes")), 1, "delivered over TLS"},
		{testutil.ToFloat64(m.deliveries.WithLabelValues("deferred", "no")), 1, "deferred in the clear"},
		{testutil.ToFloat64(m.verdicts.WithLabelValues("reject")), 1, "verdict reject"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.delay); n != 1 {
		t.Errorf("queue delay: %d series", n)
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
	if want := `gw_messages_total{program="gw-test",reason="none",result="accepted"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}

// TestIsWord: the words a label keeps are the ones the expression
// ^[a-z][a-z0-9_]{0,31}$ matches, and only those.
func TestIsWord(t *testing.T) {
	re := regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	for _, s := range []string{"", "a", "not_in_rcpthosts", "dsn_notify", "A", "_x", "9x", "x-y", "x y", "rejected\n", "\xffa",
		"a234567890123456789012345678901", "a2345678901234567890123456789012", "a23456789012345678901234567890123", "é"} {
		if got, want := isWord(s), re.MatchString(s); got != want {
			t.Errorf("isWord(%q) = %v, the expression says %v", s, got, want)
		}
	}
}
