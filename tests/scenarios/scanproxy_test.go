package scenarios

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScanProxyService is the amavisd-new arrangement of seed scenario 1
// made by gw-instance alone: a scan listener (gw-scan's SMTP proxy, with
// a real clamd) on one port relays what it passes to the instance's own
// SMTP listener on the traditional inside port, which relays only for
// loopback; gw-send delivers to a sink. Under runsvdir, each daemon a
// service of its own. A clean message arrives scanned once; a virus is
// refused by the proxy while its client is connected, and nothing of it
// reaches the queue.
func TestScanProxyService(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	clamd := startClamd(t, dir)
	inside := freePort(t, "127.0.0.1")
	proxy := freePort(t, "127.0.0.1")
	out := startSink(t, filepath.Join(dir, "out"), freePort(t, "127.0.0.30"))

	gwInstance(t, root, "create", "filter", "--smtp", inside, "--me", "filter.example.test",
		"--rcpthosts", "example.test", "--smarthost", out.addr)
	gwInstance(t, root, "listen", "filter", "scanner", "scan", proxy, "--", "--next-hop", inside)
	write(t, filepath.Join(root, "filter"), map[string]string{"control/clamd": clamd + "\n"})
	gwInstance(t, root, "check", "filter")
	if l := readFile(t, filepath.Join(root, "filter", "control", "listeners")); !strings.Contains(l, "scanner scan "+proxy+" - --next-hop "+inside) {
		t.Fatalf("control/listeners:\n%s", l)
	}

	sup := startSupervisor(t, "runit", dir)
	gwInstance(t, root, "link", "filter", sup.scan)
	sup.up(t, 4) // queued, send, smtpd, scanner
	waitFor(t, "the proxy and the inside listener", 10*time.Second, func() bool { return listening(proxy) && listening(inside) })

	mustSend(t, proxy, "someone@elsewhere.test", "alice@example.test", "through the proxy")
	mustRefuse(t, proxy, "someone@elsewhere.test", "alice@example.test", "554 5.7.1",
		"--body", "here it is: "+virusMarker+"\n")
	r := expectAt(t, out, "through the proxy", "alice@example.test")
	if n := len(r.header("X-Virus-Scanned")); n != 1 {
		t.Errorf("%d X-Virus-Scanned headers, want 1:\n%s", n, r.text)
	}
	if n := traceCount(r, "gw-smtpd"); n != 1 {
		t.Errorf("%d gw-smtpd Received lines, want 1 (the inside listener):\n%s", n, r.text)
	}
	waitFor(t, "the queue to empty", 30*time.Second, func() bool { return queued(t, root, "filter") == 0 })
	for _, m := range out.messages(t) {
		if strings.Contains(m.text, virusMarker) {
			t.Errorf("the virus reached the sink:\n%s", m.text)
		}
	}
	// The verdict line may reach svlogd just after the client's 554.
	waitFor(t, "the scanner's verdict on the virus in its log", 10*time.Second, func() bool {
		return strings.Contains(sup.logOf("filter-scanner"), "classes=virus")
	})
}
