package tests

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"gw/tests/internal/rspamdtest"
)

var (
	rspamdOnce sync.Once
	rspamdPeer *rspamdtest.Rspamd
	rspamdErr  error
	rspamdDir  string
)

// rspamd starts one rspamd for the test binary (its own configuration,
// loopback only, the test rules of rspamdtest) and returns its address.
func rspamd(t *testing.T) string {
	t.Helper()
	need(t, "rspamd")
	rspamdOnce.Do(func() {
		rspamdDir, rspamdErr = os.MkdirTemp("", "gw-e2e-rspamd-")
		if rspamdErr != nil {
			return
		}
		done := make(chan struct{})
		// One locked thread that never exits: Pdeathsig follows it.
		go func() {
			runtime.LockOSThread()
			rspamdPeer, rspamdErr = rspamdtest.Start(rspamdDir, rspamdtest.Options{Attr: daemonAttr()})
			close(done)
			select {}
		}()
		<-done
		afterAll = append(afterAll, func() {
			if rspamdPeer != nil {
				rspamdPeer.Stop()
			}
			if rspamdErr == nil && !scanFailed {
				os.RemoveAll(rspamdDir)
			}
		})
	})
	if rspamdErr != nil {
		t.Fatalf("rspamd: %v (files in %s)", rspamdErr, rspamdDir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			scanFailed = true
			t.Logf("rspamd's files kept in %s", rspamdDir)
		}
	})
	return rspamdPeer.Addr
}

// TestScanRspamdWrapper: gw-smtpd with gw-scan as QMAILQUEUE and rspamd
// its only engine. What rspamd decides is what the client hears.
func TestScanRspamdWrapper(t *testing.T) {
	addrRspamd := rspamd(t)
	in := newSMTPDInstance(t, map[string]string{"rspamd": addrRspamd + "\n"})
	addr := in.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control})
	send := func(subject, body string, extra ...string) string {
		msg := plainMessage(subject, body)
		for _, h := range extra {
			msg = h + "\n" + msg
		}
		return sendMessage(t, addr, rspamdtest.EnvFrom, []string{rspamdtest.EnvRcpt}, msg)
	}

	// C: clean mail          S: 250, with what rspamd said, and rspamd was told
	//                           the envelope, the client's address and its HELO.
	if r := send("hello", "nothing to see\n"); !strings.HasPrefix(r, "250") {
		t.Fatalf("clean: %q", r)
	}
	body := in.body(t, in.messages(t)[0])
	if !strings.Contains(body, "X-Rspamd-Status: no action, score=") || !strings.Contains(body, "GW_TEST_ENVELOPE") {
		t.Errorf("clean message, or envelope not seen by rspamd:\n%s", body)
	}

	// C: GTUBE               S: 554 (rspamd: reject), nothing queued
	if r := send("gtube", rspamdtest.GTUBE+"\n"); !strings.HasPrefix(r, "554") {
		t.Errorf("GTUBE: %q, want 554", r)
	}
	// C: the test rule       S: 250, tagged; rspamd's header added, the one it
	//                           asked to remove gone
	if r := send("x "+rspamdtest.TagMarker, "hi\n", "X-Remove-Me: please"); !strings.HasPrefix(r, "250") {
		t.Fatalf("tag rule: %q", r)
	}
	ms := in.messages(t)
	if len(ms) != 2 {
		t.Fatalf("%d queued, want 2 (clean, tagged)", len(ms))
	}
	tagged := ""
	for _, m := range ms {
		if b := in.body(t, m); strings.Contains(b, rspamdtest.TagMarker) {
			tagged = b
		}
	}
	for _, want := range []string{"X-Spam-Flag: YES\n", "X-GW-Test-Rule: hit\n", "X-Rspamd-Status: add header, score=7.0"} {
		if !strings.Contains(tagged, want) {
			t.Errorf("tagged message lacks %q:\n%s", want, tagged)
		}
	}
	if strings.Contains(tagged, "X-Remove-Me") {
		t.Errorf("X-Remove-Me kept:\n%s", tagged)
	}

	// C: rewrite-subject rule  S: 250, the Subject rspamd wrote, the old one gone
	if r := send("y "+rspamdtest.SubjectMarker, "hi\n"); !strings.HasPrefix(r, "250") {
		t.Fatalf("subject rule: %q", r)
	}
	for _, m := range in.messages(t) {
		if b := in.body(t, m); strings.Contains(b, rspamdtest.SubjectMarker) {
			if !strings.Contains(b, "\nSubject: ***SPAM*** y "+rspamdtest.SubjectMarker+"\n") && !strings.HasPrefix(b, "Subject: ***SPAM***") || strings.Count(b, "Subject:") != 1 {
				t.Errorf("subject not rewritten once:\n%s", b)
			}
		}
	}

	// C: greylist rule, soft-reject rule   S: 451 each, nothing queued
	for _, m := range []string{rspamdtest.GreyMarker, rspamdtest.SoftMarker} {
		if r := send("z "+m, "hi\n"); !strings.HasPrefix(r, "451") {
			t.Errorf("%s: %q, want 451", m, r)
		}
	}
	if n := len(in.messages(t)); n != 3 {
		t.Errorf("%d queued, want 3", n)
	}
	log, _ := os.ReadFile(in.log)
	for _, w := range []string{"rspamd=reject", "symbols=GTUBE", "reason=\"greylisted, try again later\""} {
		if !bytes.Contains(log, []byte(w)) {
			t.Errorf("log lacks %s:\n%s", w, log)
		}
	}
}

// TestScanRspamdProxy: the proxy with rspamd beside clamd. The greylist
// text reaches the client; GTUBE and the virus are refused by their own
// engine.
func TestScanRspamdProxy(t *testing.T) {
	p := scanners(t)
	addrRspamd := rspamd(t)
	inside := newSMTPDInstance(t, nil)
	insideAddr := inside.standalone(t, nil)
	addr, _, _ := scanProxy(t, insideAddr, map[string]string{"clamd": p.clamdSock + "\n", "rspamd": addrRspamd + "\n"})
	for _, c := range []struct{ subject, body, reply string }{
		{"z " + rspamdtest.GreyMarker, "hi\n", "451 4.7.1 greylisted, try again later"},
		{"gtube", rspamdtest.GTUBE + "\n", "554 5.7.1"},
		{"virus", markerVirus + "\n", "554 5.7.1"},
		{"fine", "hi\n", "250"},
	} {
		if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage(c.subject, c.body)); !strings.HasPrefix(r, c.reply) {
			t.Errorf("%s: %q, want %s", c.subject, r, c.reply)
		}
	}
	ms := inside.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d relayed, want 1", len(ms))
	}
	if b := inside.body(t, ms[0]); !strings.Contains(b, "X-Virus-Scanned: gw-scan at scanner.example.net\n") || !strings.Contains(b, "X-Rspamd-Status: no action") {
		t.Errorf("relayed:\n%s", b)
	}
}

// TestScanRspamdDown: rspamd not answering is class fail: 451 by default,
// passed with a header saying so when the policy says tag.
func TestScanRspamdDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	for _, c := range []struct {
		name, policy, reply string
		queued              int
	}{
		{"tempfail by default", "", "451", 0},
		{"pass with a header by choice", ":fail:tag\n", "250", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := newSMTPDInstance(t, map[string]string{"rspamd": dead + "\n", "scanpolicy": c.policy, "scantimeout": "5\n"})
			addr := in.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control})
			if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("down", "hello\n")); !strings.HasPrefix(r, c.reply) {
				t.Fatalf("rspamd down: %q, want %s", r, c.reply)
			}
			ms := in.messages(t)
			if len(ms) != c.queued {
				t.Fatalf("%d queued, want %d", len(ms), c.queued)
			}
			if c.queued > 0 {
				if body := in.body(t, ms[0]); !strings.Contains(body, "X-GW-Alert: unscanned") || !strings.Contains(body, "X-Rspamd-Status: unchecked (rspamd unavailable)") {
					t.Errorf("passed unscanned without a header:\n%s", body)
				}
			}
			log, _ := os.ReadFile(in.log)
			if !bytes.Contains(log, []byte("warning verdict")) || !bytes.Contains(log, []byte("rspamd=error")) {
				t.Errorf("log:\n%s", log)
			}
		})
	}
}
