package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSendCountsHops: gw-send counts trace lines as the listeners do. A
// message injected locally (no listener saw it) with 100 Received lines
// is not delivered: it bounces "too many hops" (5.4.6), and the sender's
// DSN says so. One with 50 goes through.
func TestSendCountsHops(t *testing.T) {
	rv := startReceiver(t)
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d", rv.port)})
	in.start(t)
	trace := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Received: from h%d.test by h%d.test; Tue, 1 Dec 2026 00:00:00 +0000\n", i, i+1)
		}
		return b.String()
	}
	loop := in.inject(t, "a@src.test", []string{"loop@dst.test"}, trace(100)+"Subject: looping\n\nbody\n")
	fine := in.inject(t, "a@src.test", []string{"fine@dst.test"}, trace(50)+"Subject: fine\n\nbody\n")

	waitFor(t, "both outcomes", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+loop, "result=failed")) == 1 &&
			len(in.lines("delivery", "qid="+fine, "result=delivered")) == 1
	})
	if l := in.lines("delivery", "qid="+loop); !strings.Contains(l[0], "too many hops, this message is looping (#5.4.6)") {
		t.Errorf("looping message's line: %q", l[0])
	}
	waitFor(t, "the bounce", 10*time.Second, func() bool { return len(rv.received()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	var bounce *sendReceived
	for _, m := range rv.received() {
		switch {
		case len(m.to) == 1 && m.to[0] == "loop@dst.test":
			t.Fatalf("the looping message was delivered")
		case m.from == "" && len(m.to) == 1 && m.to[0] == "a@src.test":
			bounce = &m
		}
	}
	if bounce == nil {
		t.Fatalf("no bounce to the sender among %d messages", len(rv.received()))
	}
	for _, want := range []string{"Final-Recipient: rfc822; loop@dst.test", "Status: 5.4.6", "too many hops"} {
		if !strings.Contains(bounce.data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, bounce.data)
		}
	}
}
