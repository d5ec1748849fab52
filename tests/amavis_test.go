package tests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"gw/tests/internal/amavistest"
	"gw/tests/internal/clamdtest"
)

// The seeds' content filter, as make bench runs it: amavisd-new on a
// loopback port with clamd behind it, passing clean mail to the next hop
// (here smtp-sink, in the bench Postfix's reinjection smtpd) and refusing
// the test signature, which it keeps in its quarantine. The bench's
// figures for the amavis pipeline are worth something only if this holds.
func TestAmavisPipelinePeer(t *testing.T) {
	need(t, "amavisd")
	need(t, "clamd")
	dir := workDir(t)
	clamd, err := clamdtest.Start(filepath.Join(dir, "clamd"), markerVirus, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer clamd.Stop()
	os.Chmod(filepath.Join(dir, "clamd"), 0o755)
	sink := startSMTPSink(t, filepath.Join(dir, "sink"))
	am, err := amavistest.Start(filepath.Join(dir, "amavis"), amavistest.Options{
		Addr: loopbackAddr(t), NextHop: sink.addr, ClamdSock: clamd.Sock})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop()

	c, err := smtp.Dial(am.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// client: a clean message  →  amavisd: 250, and it is at the next hop,
	// marked as scanned.
	if err := sendOne(c, "Subject: clean\r\n\r\nnothing to see\r\n"); err != nil {
		t.Fatalf("clean message: %v", err)
	}
	waitFor(t, "the clean message at the sink", 10*time.Second, func() bool { return len(sink.transactions()) == 1 })
	if tx := sink.transactions()[0]; !strings.Contains(tx, "nothing to see") || !strings.Contains(tx, "X-Virus-Scanned:") {
		t.Fatalf("the sink got:\n%s", tx)
	}
	// client: the test signature  →  amavisd: 5xx naming it, kept in the
	// quarantine, nothing more at the next hop.
	err = sendOne(c, "Subject: marked\r\n\r\n"+markerVirus+"\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 5 || !strings.Contains(se.Message, "Test.Gateway.Marker") {
		t.Fatalf("marked message: want a 5xx naming the signature, got %v", err)
	}
	q, _ := filepath.Glob(filepath.Join(am.Dir, "quarantine", "virus-*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %v, want one virus-* file", q)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(sink.transactions()); n != 1 {
		t.Fatalf("the sink holds %d messages, want only the clean one", n)
	}
}

func sendOne(c *smtp.Client, msg string) error {
	if err := c.Mail("sender@example.org", nil); err != nil {
		return err
	}
	if err := c.Rcpt("rcpt@example.net", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte("From: sender@example.org\r\nTo: rcpt@example.net\r\n" + msg)); err != nil {
		return err
	}
	return w.Close()
}
