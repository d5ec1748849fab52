package tests

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// envelopes lists each queued message's recipients, joined by commas.
func (in *smtpdInstance) envelopes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range in.messages(t) {
		var rs []string
		for _, r := range m.Recipients {
			rs = append(rs, r.Address)
		}
		out = append(out, strings.Join(rs, ","))
	}
	sort.Strings(out)
	return out
}

// TestSMTPDMilterRefusesOneRecipient plugs a milter that refuses one
// recipient at RCPT (tests/testdata/rcptmilter.py, on Debian's pymilter,
// which is libmilter: OpenDKIM, OpenDMARC and clamav-milter never refuse
// at RCPT) into gw-smtpd. As behind Postfix, its refusal is that RCPT's
// reply alone: the other recipients are taken and the message is
// queued for them, and what the milter does to the envelope at the end
// of the message (one recipient replaced by another) touches only them.
// A second message in the same session goes through the same milter
// connection.
func TestSMTPDMilterRefusesOneRecipient(t *testing.T) {
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "inside.test\n"})
	sock := filepath.Join(in.dir, "rcptmilter.sock")
	script, err := filepath.Abs("testdata/rcptmilter.py")
	if err != nil {
		t.Fatal(err)
	}
	milterDaemon(t, sock, "/usr/bin/python3", script, "unix:"+sock, "nobody@inside.test", "old@inside.test", "new@inside.test")
	os.WriteFile(filepath.Join(in.control, "milters"), []byte("rcpt unix:"+sock+" timeout=20s\n"), 0o644)
	addr := in.standalone(t, nil)

	talk(t, addr,
		"", "220 ",
		"EHLO client.example", "250 ",
		"MAIL FROM:<a@outside.test>", "250 ",
		"RCPT TO:<bob@inside.test>", "250 ",
		"RCPT TO:<nobody@inside.test>", "550 5.1.1 no mailbox here by that name",
		"RCPT TO:<old@inside.test>", "250 ",
		"DATA", "354 ",
		"From: a@outside.test\nTo: bob@inside.test\nSubject: one refused\n\nhello\n.", "250 2.0.0 ",
		// the same session, the same milter connection: the next message
		"MAIL FROM:<c@outside.test>", "250 ",
		"RCPT TO:<nobody@inside.test>", "550 5.1.1 ",
		"RCPT TO:<carol@inside.test>", "250 ",
		"DATA", "354 ",
		"Subject: two\n\nhi\n.", "250 2.0.0 ",
		"QUIT", "221 ")

	// The first message is queued for bob and, in old's place, new; the
	// second for carol. The milter was told only the recipients gw took.
	if got, want := in.envelopes(t), []string{"bob@inside.test,new@inside.test", "carol@inside.test"}; !reflect.DeepEqual(got, want) {
		t.Errorf("queued for %q, want %q", got, want)
	}
	bodies := ""
	for _, m := range in.messages(t) {
		bodies += in.body(t, m)
	}
	for _, want := range []string{
		"X-Rcpt-Milter: from=<a@outside.test> rcpts=<bob@inside.test>,<old@inside.test>\n",
		"X-Rcpt-Milter: from=<c@outside.test> rcpts=<carol@inside.test>\n",
	} {
		if !strings.Contains(bodies, want) {
			t.Errorf("no %q in the queued messages:\n%s", want, bodies)
		}
	}
	log := in.waitLog(t, "reason=\"milter rcpt:")
	if !strings.Contains(log, "to=nobody@inside.test result=reject code=550") {
		t.Errorf("the log does not show the milter's refusal of nobody@:\n%s", log)
	}
}

// TestSMTPDSessionTestMilterRcpt: gw-smtpd's session test, on a face
// with the recipient milter, says which milter refused which recipient
// at RCPT and that the others went on.
func TestSMTPDSessionTestMilterRcpt(t *testing.T) {
	dir := workDir(t)
	sock := filepath.Join(dir, "rcptmilter.sock")
	script, err := filepath.Abs("testdata/rcptmilter.py")
	if err != nil {
		t.Fatal(err)
	}
	milterDaemon(t, sock, "/usr/bin/python3", script, "unix:"+sock, "nobody@example.com", "old@example.com", "new@example.com")
	in := newSessionInstance(t, map[string]string{"milters": "rcpt unix:" + sock + " timeout=20s\n"})
	out := in.session(t, "203.0.113.5",
		"HELO me\nMAIL FROM:<a@example.org>\nRCPT TO:<u@example.com>\nRCPT TO:<nobody@example.com>\nDATA\nSubject: test\n\nhi\n.\nQUIT\n")
	transcript(t, out,
		"220 ", "250 ", "250 2.0.0 ok", "250 2.0.0 ok",
		">>> milter rcpt: refused nobody@example.com at RCPT, this recipient alone: 550 no mailbox here by that name",
		"550 5.1.1 no mailbox here by that name",
		"354 ",
		">>> milters rcpt: accepted, 1 change(s)",
		"250 2.0.0 ok",
		"221 ")
}
