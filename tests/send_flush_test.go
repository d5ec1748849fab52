package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qq"
)

// TestSendStartsDuringAFailingFlush: gw-queued writes a batch to its open
// segment and its flush hangs for 3 s, then fails (EIO, injected by
// strace). gw-send starts meanwhile, while the refused message's bytes
// lie unflushed in the segment. The client hears 53 (temporary); gw-send
// never takes the message, so nothing refused is delivered or bounced,
// while a message queued after it is delivered.
func TestSendStartsDuringAFailingFlush(t *testing.T) {
	straceBin := need(t, "strace")
	rv := startReceiver(t)
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf("good.test:[127.0.0.1]:%d", rv.port)})
	qd := startQueued(t, in.queue, filepath.Join(in.dir, "inject.sock"), straceBin, "-f", "-qq", "-o", "/dev/null",
		"-e", "trace=fdatasync", "-e", "inject=fdatasync:delay_enter=3000000:error=EIO:when=1")
	cl, err := inject.Dial(qd.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	answer := make(chan int, 1)
	go func() {
		code, err := cl.Inject(strings.NewReader("Subject: refused\n\nx\n"),
			envelope.Envelope{Sender: "a@gw.test", Recipients: []string{"refused@good.test"}})
		if err != nil {
			code = -1
		}
		answer <- code
	}()
	// The batch is in the segment (a lock-free reader sees it, S2) and
	// its flush is under way: gw-send starts now.
	waitFor(t, "the batch written", 3*time.Second, func() bool { return len(in.messages(t)) == 1 })
	in.start(t)
	select {
	case code := <-answer:
		if code != qq.WriteError {
			t.Fatalf("gw-queued answered %d for a message whose flush failed, want %d", code, qq.WriteError)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gw-queued did not answer")
	}
	after := in.inject(t, "a@gw.test", []string{"after@good.test"}, "Subject: after\n\nx\n")
	waitFor(t, "the message queued after", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+after, "result=delivered")) == 1
	})
	time.Sleep(500 * time.Millisecond)
	for _, m := range rv.received() {
		for _, to := range m.to {
			if to == "refused@good.test" {
				t.Errorf("the message refused with 53 was delivered")
			}
		}
	}
	if n := len(in.lines("delivery", "rcpt=refused@good.test")); n != 0 {
		t.Errorf("gw-send made %d deliveries of the refused message", n)
	}
	for _, m := range in.messages(t) {
		t.Errorf("message %s still queued: %v", m.ID, m.Recipients)
	}
}
