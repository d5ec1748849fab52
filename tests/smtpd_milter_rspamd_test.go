package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gw/tests/internal/rspamdtest"
)

// TestSMTPDMilterRspamd plugs rspamd's proxy worker, in milter mode and
// scanning itself, into gw-smtpd as Postfix users plug it into
// smtpd_milters: Debian's rspamd on loopback with the tests' own
// configuration and rules (tests/internal/rspamdtest). What rspamd
// decides at the end of the message is what the client hears, and the
// header changes it asks for are in the queued message.
func TestSMTPDMilterRspamd(t *testing.T) {
	need(t, "rspamd")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.com\n"})
	rdir, err := os.MkdirTemp("", "gw-e2e-rspamd-milter-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(rdir)
		} else {
			t.Logf("rspamd's files kept in %s", rdir)
		}
	})
	r, err := rspamdtest.Start(rdir, rspamdtest.Options{Milter: true, Attr: daemonAttr()})
	if err != nil {
		t.Fatalf("rspamd: %v", err)
	}
	t.Cleanup(r.Stop)
	_, port, _ := strings.Cut(r.Milter, ":")
	// The same rspamd twice: the default face fails closed when it is
	// down, the one 127.0.0.2 gets fails open.
	os.WriteFile(filepath.Join(in.control, "milters"), []byte(
		"rspamd inet:"+port+"@127.0.0.1 timeout=30s default=tempfail\n"+
			"rspamd-open inet:"+port+"@127.0.0.1 timeout=30s default=accept\n"), 0o644)
	db := in.aclDB(t, "127.0.0.2:allow,MILTERS=\"rspamd-open\"\n127.0.0.1:allow,MILTERS=\"rspamd\"\n")
	addr := in.standalone(t, nil, "--acl", db)
	send := func(subject, body string, extra ...string) string {
		msg := plainMessage(subject, body)
		for _, h := range extra {
			msg = h + "\n" + msg
		}
		return sendMessage(t, addr, rspamdtest.EnvFrom, []string{rspamdtest.EnvRcpt}, msg)
	}
	queued := func(marker string) string {
		for _, m := range in.messages(t) {
			if b := in.body(t, m); strings.Contains(b, marker) {
				return b
			}
		}
		t.Fatalf("no queued message holds %q", marker)
		return ""
	}

	// C: clean mail        S: 250, queued as it came
	if r := send("hello", "nothing to see\n"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("clean: %q", r)
	}
	if b := queued("Subject: hello\n"); strings.Contains(b, "X-Spam") {
		t.Errorf("clean message marked:\n%s", b)
	}
	// C: GTUBE             S: rspamd's reject, at the dot; nothing queued
	if r := send("gtube", rspamdtest.GTUBE+"\n"); r != "554 5.7.1 Gtube pattern" {
		t.Errorf("GTUBE: %q, want rspamd's 554 5.7.1 Gtube pattern", r)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Fatalf("%d queued after GTUBE, want 1", n)
	}
	// C: the test rule     S: 250, tagged: rspamd's X-Spam, the header the
	//                         rule asks for, and the one it removes gone
	if r := send("x "+rspamdtest.TagMarker, "hi\n", "X-Remove-Me: please"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("tag rule: %q", r)
	}
	tagged := queued(rspamdtest.TagMarker)
	for _, want := range []string{"\nX-Spam: Yes\n", "\nX-GW-Test-Rule: hit\n"} {
		if !strings.Contains(tagged, want) {
			t.Errorf("tagged message lacks %q:\n%s", want, tagged)
		}
	}
	if strings.Contains(tagged, "X-Remove-Me") {
		t.Errorf("X-Remove-Me kept:\n%s", tagged)
	}
	// C: rewrite-subject rule  S: 250, the Subject rspamd wrote, once
	if r := send("y "+rspamdtest.SubjectMarker, "hi\n"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("subject rule: %q", r)
	}
	if b := queued(rspamdtest.SubjectMarker); !strings.Contains(b, "\nSubject: ***SPAM*** y "+rspamdtest.SubjectMarker+"\n") || strings.Count(b, "Subject:") != 1 {
		t.Errorf("subject not rewritten once:\n%s", b)
	}
	// C: soft-reject rule  S: rspamd's 451 with the rule's text; nothing queued
	if r := send("z "+rspamdtest.SoftMarker, "hi\n"); r != "451 4.7.1 gw test rule: try later" {
		t.Errorf("soft reject: %q", r)
	}
	if n := len(in.messages(t)); n != 3 {
		t.Fatalf("%d queued, want 3 (clean, tagged, rewritten)", n)
	}

	// rspamd goes down. The default face fails closed at MAIL, the
	// default=accept one takes the mail unscanned; the log names the milter.
	r.Stop()
	msg := filepath.Join(in.dir, "down")
	os.WriteFile(msg, []byte(strings.ReplaceAll(plainMessage("down", "hi\n"), "\n", "\r\n")), 0o644)
	out := swaks(t, addr, "--local-interface", "127.0.0.1", "--from", rspamdtest.EnvFrom, "--to", rspamdtest.EnvRcpt, "--data", msg)
	if r := replyTo(out, "MAIL"); !strings.HasPrefix(r, "451 4.7.1") {
		t.Errorf("rspamd down, default=tempfail: MAIL %q\n%s", r, out)
	}
	out = swaks(t, addr, "--local-interface", "127.0.0.2", "--from", rspamdtest.EnvFrom, "--to", rspamdtest.EnvRcpt, "--data", msg)
	if r := replyTo(out, "."); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("rspamd down, default=accept: %q\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 4 {
		t.Errorf("%d queued, want 4", n)
	}
	log := in.waitLog(t, "milter=rspamd-open")
	if !strings.Contains(log, "milter_failed") || !strings.Contains(log, "milter=rspamd err=") {
		t.Errorf("the log does not name the failed milters:\n%s", log)
	}
}
