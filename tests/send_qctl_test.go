package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func qctl(t *testing.T, queueDir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin("gw-qctl"), append([]string{"--queue", queueDir}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestQctlRemoveWhileDelivering: a message whose delivery hangs in DATA is
// removed; gw-qctl returns only once gw-send has aborted the delivery and
// removed the message, and nothing reaches the receiver.
func TestQctlRemoveWhileDelivering(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	in.start(t)
	id := in.inject(t, "a@good.test", []string{"hang@good.test"}, "Subject: stuck\n\nx\n")
	other := in.inject(t, "a@good.test", []string{"ok@good.test"}, "Subject: fine\n\nx\n")
	waitFor(t, "the other delivery", 5*time.Second, func() bool { return len(rv.received()) == 1 })
	time.Sleep(200 * time.Millisecond) // the stuck one is in DATA by now
	start := time.Now()
	out, code := qctl(t, in.queue, "remove", id)
	if code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl remove: exit %d, %q", code, out)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("remove took %v", time.Since(start))
	}
	for _, m := range in.messages(t) {
		if m.ID.String() == id {
			t.Fatalf("message %s still queued after remove returned", id)
		}
	}
	if n := len(in.lines("delivery", "qid="+id, "result=aborted")); n != 1 {
		t.Errorf("%d aborted delivery lines, want 1", n)
	}
	if got := rv.received(); len(got) != 1 || got[0].to[0] != "ok@good.test" {
		t.Errorf("received %+v", got)
	}
	_ = other
	// An unknown id is an error, exit 100.
	if out, code := qctl(t, in.queue, "hold", "0000000000001"); code != 100 || !strings.Contains(out, "no such message") {
		t.Errorf("hold of an unknown id: exit %d, %q", code, out)
	}
}

// TestQctlWithoutSend: with no gw-send running gw-qctl takes the runner
// lock itself; a held message stays queued while gw-send runs, and goes
// once released.
func TestQctlWithoutSend(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	id := in.inject(t, "a@good.test", []string{"ok@good.test"}, "Subject: held\n\nx\n")
	in.inject(t, "a@good.test", []string{"ok2@good.test"}, "Subject: free\n\nx\n")
	if out, code := qctl(t, in.queue, "--recipient", "ok@good", "hold"); code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("hold: exit %d, %q", code, out)
	}
	in.start(t)
	waitFor(t, "the free message", 5*time.Second, func() bool { return len(rv.received()) == 1 })
	time.Sleep(300 * time.Millisecond)
	if len(rv.received()) != 1 {
		t.Fatalf("a held message was delivered")
	}
	if out, code := qctl(t, in.queue, "release", id); code != 0 {
		t.Fatalf("release: exit %d, %q", code, out)
	}
	waitFor(t, "the released message", 5*time.Second, func() bool { return len(rv.received()) == 2 })
}

// TestQctlRetryWithoutSend: with gw-send stopped, gw-qctl retry records a
// next try of now for a deferred recipient (attempts and last error
// kept), and gw-send, started again, tries it at once rather than at the
// schedule's 400 s.
func TestQctlRetryWithoutSend(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	id := in.inject(t, "a@good.test", []string{"later@good.test"}, "Subject: deferred\n\nx\n")
	in.start(t)
	waitFor(t, "the deferral", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	in.stop()
	before := in.messages(t)[0].Recipients[0]
	if wait := time.Until(before.NextTry); wait < 5*time.Minute {
		t.Fatalf("deferred recipient due in %v, want the schedule's ~400 s", wait)
	}
	if out, code := qctl(t, in.queue, "retry", id); code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl retry: exit %d, %q", code, out)
	}
	after := in.messages(t)[0].Recipients[0]
	if time.Until(after.NextTry) > time.Second || after.Attempts != before.Attempts || after.LastError() != before.LastError() {
		t.Fatalf("after retry: next %v (in %v), attempts %d (was %d), error %q (was %q)",
			after.NextTry, time.Until(after.NextTry), after.Attempts, before.Attempts, after.LastError(), before.LastError())
	}
	in.start(t)
	waitFor(t, "the second attempt", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 2
	})
}
