package tests

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTraceReplyOfNextHop (issue 17, one trace): a message through
// gw-smtpd, gw-queued and gw-send to Postfix's smtp-sink. The qid in
// gw-smtpd's 250 is on its accepted line and on gw-send's delivery line,
// and the delivery line keeps the reply that took the message, where it
// used to say reply="".
func TestTraceReplyOfNextHop(t *testing.T) {
	sink := startSMTPSink(t, filepath.Join(workDir(t), "sink"))
	_, port, _ := net.SplitHostPort(sink.addr)
	g := startDSNGateway(t, port, map[string]string{})
	talk(t, g.addr,
		"", "220 ",
		"EHLO client.example", "250 ",
		"MAIL FROM:<a@sender.test>", "250 ",
		"RCPT TO:<ok@good.test>", "250 ",
		"DATA", "354 ",
		"Message-ID: <trace.1@sender.test>\nSubject: followed\n\nbody\n.", "250 2.0.0 ok ",
		"QUIT", "221 ")
	log, _ := os.ReadFile(g.smtpd.log)
	m := regexp.MustCompile(` accepted .* qid=(\S+)`).FindStringSubmatch(string(log))
	if m == nil {
		t.Fatalf("gw-smtpd logged no accepted line with a qid:\n%s", log)
	}
	qid := m[1]
	line := g.send.oneLine(t, "delivery", "qid="+qid, "result=delivered")
	t.Logf("gw-send: %s", line)
	if !regexp.MustCompile(`reply="250 2\.0\.0 \S`).MatchString(line) {
		t.Errorf("delivery line lacks smtp-sink's reply:\n%s", line)
	}
	waitFor(t, "smtp-sink to record the message", 5*time.Second, func() bool { return len(sink.transactions()) == 1 })
	if !strings.Contains(sink.transactions()[0], "Message-ID: <trace.1@sender.test>") {
		t.Errorf("smtp-sink got another message:\n%s", sink.transactions()[0])
	}
}
