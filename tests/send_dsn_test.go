package tests

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSendDelayWarning: with control/delaywarning set, the sender of a
// message deferred that long gets one RFC 3464 notification with
// Action: delayed, and not another at the next deferral; the message
// stays queued.
func TestSendDelayWarning(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1", "sender.test. MX 10 mx.good.test.")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr, "delaywarning": "1"})
	in.start(t)
	id := in.inject(t, "a@sender.test", []string{"later@good.test"}, "Subject: slow\nMessage-ID: <slow@sender.test>\n\nx\n")
	deferrals := func(n int) func() bool {
		return func() bool { return len(in.lines("delivery", "qid="+id, "result=deferred")) == n }
	}
	waitFor(t, "the first deferral", 5*time.Second, deferrals(1))
	time.Sleep(300 * time.Millisecond)
	if len(in.lines("delay_warning")) != 0 || len(rv.received()) != 0 {
		t.Fatal("a delay warning before delaywarning's second")
	}
	time.Sleep(900 * time.Millisecond)
	in.signal(syscall.SIGALRM)
	waitFor(t, "the second deferral", 5*time.Second, deferrals(2))
	waitFor(t, "the delay warning", 5*time.Second, func() bool { return len(rv.received()) == 1 })
	dsn := rv.received()[0]
	if dsn.from != "" || len(dsn.to) != 1 || dsn.to[0] != "a@sender.test" {
		t.Fatalf("warning envelope %q -> %q", dsn.from, dsn.to)
	}
	for _, want := range []string{
		"Subject: Delivery Status Notification (Delay)", "report-type=delivery-status",
		"Final-Recipient: rfc822; later@good.test", "Action: delayed", "Status: 4.2.0",
		"Will-Retry-Until: ", "Message-ID: <slow@sender.test>",
	} {
		if !strings.Contains(dsn.data, want) {
			t.Errorf("warning lacks %q:\n%s", want, dsn.data)
		}
	}
	in.signal(syscall.SIGALRM)
	waitFor(t, "the third deferral", 5*time.Second, deferrals(3))
	time.Sleep(300 * time.Millisecond)
	if n := len(rv.received()); n != 1 {
		t.Errorf("%d notifications after three deferrals, want 1", n)
	}
	if len(in.messages(t)) != 1 {
		t.Error("the delayed message left the queue")
	}
}

// TestSendBounceQueue: with control/bouncequeue, a bounce is injected
// into that instance's queue, not this one, and that instance's gw-send
// delivers it.
func TestSendBounceQueue(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1", "sender.test. MX 10 mx.good.test.")
	bi := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr, "bouncequeue": bi.queue})
	in.start(t)
	id := in.inject(t, "a@sender.test", []string{"bad@good.test"}, "Subject: refused\n\nx\n")
	waitFor(t, "the bounce", 5*time.Second, func() bool { return len(in.lines("bounce", "qid="+id)) == 1 })
	waitFor(t, "the queue to empty", 5*time.Second, func() bool { return len(in.messages(t)) == 0 })
	held := bi.messages(t)
	if len(held) != 1 || held[0].Sender != "" || len(held[0].Recipients) != 1 || held[0].Recipients[0].Address != "a@sender.test" {
		t.Fatalf("bounce queue holds %+v, want one bounce to a@sender.test", held)
	}
	if len(rv.received()) != 0 {
		t.Fatal("the bounce went out through the original instance")
	}
	bi.start(t)
	waitFor(t, "the bounce delivered by the bounce instance", 5*time.Second, func() bool { return len(rv.received()) == 1 })
	if got := rv.received()[0]; got.from != "" || !strings.Contains(got.data, "Final-Recipient: rfc822; bad@good.test") {
		t.Errorf("bounce %q: %q", got.from, got.data)
	}
	waitFor(t, "the bounce queue to empty", 5*time.Second, func() bool { return len(bi.messages(t)) == 0 })
}
