package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gw/lib/queue"
)

// TestSendPossibleDuplicateAfterTimeout: the remote reads the message to
// its final dot and never answers. gw-send times out (timeoutremote 2 s),
// defers the recipient, and says it may have been delivered: a
// possible_duplicate line, and the words in gw-qstat's last error.
func TestSendPossibleDuplicateAfterTimeout(t *testing.T) {
	rv := startReceiver(t)
	in := newSendInstance(t, map[string]string{"timeoutremote": "2",
		"smtproutes": fmt.Sprintf("good.test:[127.0.0.1]:%d", rv.port)})
	in.start(t)
	id := in.inject(t, "a@gw.test", []string{"hang@good.test"}, "Subject: no reply\n\nx\n")
	waitFor(t, "the deferral after the timeout", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	if n := len(in.lines("possible_duplicate", "qid="+id, "rcpt=hang@good.test")); n != 1 {
		t.Errorf("%d possible_duplicate lines for a timeout after the final dot, want 1", n)
	}
	if line := rcptLine(qstatList(t, in.queue), "hang@good.test"); !strings.Contains(line, "possible duplicate") {
		t.Errorf("gw-qstat list does not name the possible duplicate: %q", line)
	}
}

// TestSendPossibleDuplicateAfterCrash: gw-send is killed (SIGKILL) while
// the remote holds the message after its final dot. Started again, it
// finds in the journal that the dot went out with no reply recorded, and
// logs the possible duplicate before it tries again. The same message
// had two more recipients the remote did not take at RCPT, one refused
// (550) and one deferred (451): the final dot never went to them, so
// they are no possible duplicates; tried again, each gets its own answer.
func TestSendPossibleDuplicateAfterCrash(t *testing.T) {
	rv := startReceiver(t)
	// timeoutremote ends the second attempt, which the remote holds too.
	in := newSendInstance(t, map[string]string{"timeoutremote": "2",
		"smtproutes": fmt.Sprintf("good.test:[127.0.0.1]:%d", rv.port)})
	in.start(t)
	id := in.inject(t, "a@gw.test", []string{"hang@good.test", "bad@good.test", "later@good.test"},
		"Subject: crash after the dot\n\nx\n")
	waitFor(t, "the remote to hold the message after the dot", 10*time.Second, func() bool {
		return strings.Contains(rv.log.String(), "hanging")
	})
	if n := len(in.lines("possible_duplicate")); n != 0 {
		t.Fatalf("%d possible_duplicate lines before the crash", n)
	}
	in.cmd.Process.Kill()
	in.cmd.Wait()
	in.start(t)
	waitFor(t, "the possible duplicate found at start", 5*time.Second, func() bool {
		return len(in.lines("possible_duplicate", "qid="+id, "rcpt=hang@good.test")) >= 1
	})
	waitFor(t, "the refused recipients tried again", 20*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "rcpt=bad@good.test", "result=failed")) == 1 &&
			len(in.lines("delivery", "qid="+id, "rcpt=later@good.test", "result=deferred")) == 1
	})
	for _, rcpt := range []string{"bad@good.test", "later@good.test"} {
		if l := in.lines("possible_duplicate", "rcpt="+rcpt); len(l) != 0 {
			t.Errorf("a recipient refused at RCPT is named a possible duplicate: %q", l)
		}
	}
	for _, m := range in.messages(t) {
		if m.Sender == "" {
			continue // the bounce for bad@good.test
		}
		hang, bad, later := m.Recipients[0], m.Recipients[1], m.Recipients[2]
		// Two attempts: the one the crash cut, and the second (held too).
		if hang.Attempts != 2 || !strings.Contains(hang.LastError(), "possible duplicate") {
			t.Errorf("after the restart: %+v, want two attempts, the last naming the possible duplicate", hang)
		}
		if bad.State != queue.Failed || bad.Outcome.Code != 550 || bad.Outcome.DotSent {
			t.Errorf("the recipient refused at RCPT: %+v, want failed by its 550", bad)
		}
		if later.State != queue.Pending || later.Outcome.Code != 451 || later.Outcome.DotSent ||
			strings.Contains(later.LastError(), "possible duplicate") {
			t.Errorf("the recipient deferred at RCPT: %+v, want deferred by its 451, no duplicate", later)
		}
	}
}
