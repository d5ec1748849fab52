package scenarios

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
)

// TestTraceAcrossQMTPHop (issue 17, one trace) under runsvdir, the logs
// as svlogd keeps them: a message through two instances, main's gw-smtpd,
// queue and gw-send, by QMTP (gw-instance route) to sec's gw-qmtpd,
// queue and gw-send, to smtp-sink. gw-send puts X-Gw-Trace on top of the
// package; sec's gw-qmtpd takes it off and, the primary being GW_PEER in
// its ACL, logs prev=HOST/QID. gw-qstat trace, given either instance's
// qid or the Message-ID, reads every instance under the root and tells
// the one life in order. The X-Gw-Trace the outside client forged is
// taken off at main's face and not believed; no X-Gw-Trace reaches the
// sink. A recipient main cannot reach is tried twice: gw-qstat show
// lists both attempts.
func TestTraceAcrossQMTPHop(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	dns := dnstest.Start(t)
	addr := freePort(t, "127.0.0.1")
	sink := startSink(t, filepath.Join(dir, "sink"), freePort(t, "127.0.0.1"))
	down := freePort(t, "127.0.0.1") // nothing listens there

	gwInstance(t, root, "create", "main", "--smtp", addr, "--me", "gw.test", "--rcpthosts", "gw.test",
		"--env", "GW_DNS="+dns.Addr)
	gwInstance(t, root, "create", "sec", "--me", "sec.gw.test")
	gwInstance(t, root, "route", "--from", "main", "hop.test", "sec")
	write(t, filepath.Join(root, "main"), map[string]string{
		"control/dnsserver":  dns.Addr + "\n",
		"control/smtproutes": "down.test:" + down + "\n", "control/backoffmin": "1\n", "control/backoffmax": "2\n"})
	write(t, filepath.Join(root, "sec"), map[string]string{
		"control/dnsserver": dns.Addr + "\n", "control/smtproutes": "hop.test:" + sink.addr + "\n"})
	if acl := readFile(t, filepath.Join(root, "sec", "acl", "tcp.qmtp")); !strings.Contains(acl, `127.:allow,GW_PEER=""`) {
		t.Fatalf("sec's QMTP ACL does not mark the primaries as peers:\n%s", acl)
	}
	sup := startSupervisor(t, "runit", dir)
	gwInstance(t, root, "link", "main", sup.scan)
	gwInstance(t, root, "link", "sec", sup.scan)
	sup.up(t, 3+3)
	waitFor(t, "main's listener", 10*time.Second, func() bool { return listening(addr) })

	// The client forges a trail: an X-Gw-Trace naming a host and qid
	// of its choosing.
	out, code := swaks(t, "--server", addr, "--from", "alice@gw.test", "--to", "bob@hop.test",
		"--header", "Subject: across the hop", "--header", "Message-Id: <hop.1@gw.test>",
		"--add-header", "X-Gw-Trace: host=evil.example qid=0000000000001")
	qid := regexp.MustCompile(`<-  250 2\.0\.0 ok ([0-9a-f]{13})`).FindStringSubmatch(out)
	if code != 0 || qid == nil {
		t.Fatalf("swaks: exit %d, no 250 with a qid:\n%s", code, out)
	}
	q1 := qid[1]

	accepted := regexp.MustCompile(`info accepted .*qid=([0-9a-f]{13}) .*msgid=<hop\.1@gw\.test> prev=gw\.test/` + q1 + `\b`)
	var q2 string
	waitFor(t, "sec's gw-qmtpd to log the hop from main", 30*time.Second, func() bool {
		m := accepted.FindStringSubmatch(sup.logOf("sec-qmtpd"))
		if m != nil {
			q2 = m[1]
		}
		return m != nil
	})
	waitFor(t, "sec's delivery to the sink", 30*time.Second, func() bool {
		return strings.Contains(sup.logOf("sec-send"), "qid="+q2+" rcpt=bob@hop.test") &&
			strings.Contains(sup.logOf("main-send"), "qid="+q1+" rcpt=bob@hop.test")
	})
	mainLine := regexp.MustCompile(`(?m)info accepted .*qid=` + q1 + ` .*$`).FindString(sup.logOf("main-smtpd"))
	if !strings.Contains(mainLine, " trace=untrusted") || strings.Contains(mainLine, "prev=") {
		t.Errorf("main believed or did not note the forged X-Gw-Trace:\n%s", mainLine)
	}
	got := sink.bySubject(t, "across the hop")
	if len(got) != 1 {
		t.Fatalf("the sink has %d copies of the message", len(got))
	}
	if strings.Contains(strings.ToLower(got[0].text), "x-gw-trace") || !strings.Contains(got[0].text, "with QMTP") {
		t.Errorf("the sink's copy carries X-Gw-Trace, or no QMTP hop:\n%s", got[0].text)
	}

	// The whole life, from every instance's logs, in time order.
	trace := func(id string) string {
		t.Helper()
		out, err := exec.Command(bin("gw-qstat"), "--root", root, "trace", id).CombinedOutput()
		if err != nil {
			t.Fatalf("gw-qstat trace %s: %v\n%s", id, err, out)
		}
		return string(out)
	}
	// The log services write each line when it comes, so a trace taken
	// while the last lines (sec's queued, each end) are on their way can
	// differ from the next: read until the three keys give one life.
	var life string
	waitFor(t, "the traces by each key to agree", 30*time.Second, func() bool {
		life = trace(q1)
		return trace(q2) == life && trace("<hop.1@gw.test>") == life
	})
	t.Logf("gw-qstat trace %s:\n%s", q1, life)
	at := func(re string) int {
		t.Helper()
		loc := regexp.MustCompile(`(?m)^\S+ \S+ ` + re).FindStringIndex(life)
		if loc == nil {
			t.Fatalf("gw-qstat trace %s has no line %s", q1, re)
		}
		return loc[0]
	}
	mainAccepted := at(`main/smtpd info accepted .*qid=` + q1 + ` `)
	mainDelivered := at(`main/send info delivery qid=` + q1 + ` rcpt=bob@hop\.test .*result=delivered reply="K ok \d+ qp ` + q2 + `"`)
	secAccepted := at(`sec/qmtpd info accepted .*qid=` + q2 + ` .*prev=gw\.test/` + q1)
	secDelivered := at(`sec/send info delivery qid=` + q2 + ` rcpt=bob@hop\.test .*result=delivered`)
	// Only what causes what is ordered: sec's gw-send may deliver before
	// sec's listener has written its accepted line (both follow gw-queued's
	// commit), so secAccepted and secDelivered may come either way.
	if !(mainAccepted < mainDelivered && mainAccepted < secAccepted && mainAccepted < secDelivered) {
		t.Errorf("gw-qstat trace %s is out of order", q1)
	}
	// The forged qid leads nowhere.
	if out, err := exec.Command(bin("gw-qstat"), "--root", root, "trace", "0000000000001").CombinedOutput(); err == nil {
		t.Errorf("the forged qid has a trail:\n%s", out)
	}

	// A recipient whose host is down: deferred, tried again, deferred.
	out, code = swaks(t, "--server", addr, "--from", "alice@gw.test", "--to", "carol@down.test", "--header", "Subject: later")
	qid = regexp.MustCompile(`<-  250 2\.0\.0 ok ([0-9a-f]{13})`).FindStringSubmatch(out)
	if code != 0 || qid == nil {
		t.Fatalf("swaks: exit %d, no 250 with a qid:\n%s", code, out)
	}
	q3 := qid[1]
	deferred := regexp.MustCompile(`qid=` + q3 + ` rcpt=carol@down\.test .*result=deferred`)
	deadline := time.Now().Add(60 * time.Second)
	for len(deferred.FindAllString(sup.logOf("main-send"), -1)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("carol@down.test was not tried twice:\n%s", sup.logOf("main-send"))
		}
		time.Sleep(2 * time.Second)
		sup.control(t, "main-send", "alarm")
	}
	show := qstat(t, root, "main", "show", "--envelope", q3)
	t.Logf("gw-qstat show %s:\n%s", q3, show)
	_, port, _ := strings.Cut(down, ":")
	attempts := regexp.MustCompile(`(?m)^recipient attempt: \d+ \w+ \d{4} [0-9:]{8} GMT deferred 127\.0\.0\.1\[127\.0\.0\.1\]:`+port+`: .*connection refused \(#4\.4\.1\)$`).FindAllString(show, -1)
	if len(attempts) < 2 {
		t.Errorf("gw-qstat show lists %d attempts for carol@down.test, want both", len(attempts))
	}
	var js struct {
		Recipients []struct {
			Address string
			History []struct {
				Time          int64
				Result, Reply string
			}
		}
	}
	if err := json.Unmarshal([]byte(qstat(t, root, "main", "show", "--json", q3)), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Recipients) != 1 || len(js.Recipients[0].History) < 2 || js.Recipients[0].History[0].Result != "deferred" ||
		js.Recipients[0].History[0].Time > js.Recipients[0].History[1].Time {
		t.Errorf("gw-qstat show --json: %+v", js.Recipients)
	}
}
