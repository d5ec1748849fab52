package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
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
// logs the possible duplicate before it tries again.
func TestSendPossibleDuplicateAfterCrash(t *testing.T) {
	rv := startReceiver(t)
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf("good.test:[127.0.0.1]:%d", rv.port)})
	in.start(t)
	id := in.inject(t, "a@gw.test", []string{"hang@good.test"}, "Subject: crash after the dot\n\nx\n")
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
		return len(in.lines("possible_duplicate", "qid="+id, "rcpt=hang@good.test")) == 1
	})
	for _, m := range in.messages(t) {
		if rc := m.Recipients[0]; rc.Attempts != 1 || !strings.Contains(rc.LastError(), "possible duplicate") {
			t.Errorf("after the restart: %+v, want one attempt that names the possible duplicate", rc)
		}
	}
}
