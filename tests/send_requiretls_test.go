package tests

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// requireTLSHop is a gw-smtpd that presents the test PKI's mx.test
// certificate on STARTTLS and takes mail for gw.test into its queue.
func requireTLSHop(t *testing.T, pki *testPKI) *smtpdInstance {
	t.Helper()
	cert, _ := os.ReadFile(pki.file("good.pem"))
	key, _ := os.ReadFile(pki.file("good.key"))
	return newSMTPDInstance(t, map[string]string{"servercert.pem": string(cert) + string(key), "rcpthosts": "gw.test\n"})
}

// TestSendRequireTLS: RFC 8689 from the front door to the next hop.
//
// A client speaks to gw-smtpd: in the clear, REQUIRETLS is not offered
// and MAIL with it gets 530 5.7.10; after STARTTLS it is offered and
// taken. The message goes into gw-send's queue with the envelope's R
// item, and gw-send carries it to the next hop, a second gw-smtpd with
// a certificate from the test CA (level verify, match=mx.test), with
// REQUIRETLS on MAIL: that hop's queue holds it with REQUIRETLS again.
//
// The same kind of message to Postfix, which verifies but does not offer
// REQUIRETLS, fails for good with 5.7.10 and never reaches it (its
// bounce does, without REQUIRETLS: a report is not dropped for that); and
// to the gw-smtpd hop at level may, where its certificate is not checked
// against a name (the route is an address literal), also 5.7.10.
func TestSendRequireTLS(t *testing.T) {
	pki := newTestPKI(t)
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(pki.file("ca.pem"))
	roots.AppendCertsFromPEM(caPEM)

	hop := requireTLSHop(t, pki)
	hopAddr := hop.standalone(t, nil)
	sender := tlsSendInstance(t, hopAddr, map[string]string{"tlscafile": pki.file("ca.pem")}, "%s verify match=mx.test")

	front := requireTLSHop(t, pki)
	front.queue = sender.queue
	frontAddr := front.standalone(t, nil)

	// In the clear: not offered, and refused.
	c, err := smtp.Dial(frontAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("REQUIRETLS"); ok {
		t.Error("REQUIRETLS offered in the clear")
	}
	err = c.Mail("a@src.test", &smtp.MailOptions{RequireTLS: true})
	if err == nil || !strings.Contains(err.Error(), "server does not support REQUIRETLS") {
		t.Errorf("go-smtp sent REQUIRETLS where it is not offered: %v", err)
	}
	c.Close()
	clear := smtpdDialogue(t, frontAddr, "EHLO client.test\r\nMAIL FROM:<a@src.test> REQUIRETLS\r\nQUIT\r\n")
	if len(clear) < 3 || !strings.HasPrefix(clear[2], "530 5.7.10 ") {
		t.Errorf("MAIL REQUIRETLS in the clear: %q, want 530 5.7.10", clear)
	}

	// Over TLS: offered, taken, queued with the R item.
	c, err = smtp.DialStartTLS(frontAddr, &tls.Config{ServerName: "mx.test", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("REQUIRETLS"); !ok {
		t.Fatal("REQUIRETLS not offered after STARTTLS")
	}
	if err := c.SendMail("a@src.test", []string{"b@gw.test"}, strings.NewReader("Subject: protected\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("sending with REQUIRETLS over TLS: %v", err)
	}
	c.Close()
	// SendMail gives no MailOptions: the REQUIRETLS message goes by hand.
	c, err = smtp.DialStartTLS(frontAddr, &tls.Config{ServerName: "mx.test", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@src.test", &smtp.MailOptions{RequireTLS: true}); err != nil {
		t.Fatalf("MAIL REQUIRETLS over TLS: %v", err)
	}
	if err := c.Rcpt("b@gw.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: requiretls\r\n\r\nbody\r\n"))
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	c.Quit()

	waitFor(t, "both messages at the next hop", 20*time.Second, func() bool {
		return len(sender.lines("delivery", "result=delivered")) == 2
	})
	for _, d := range sender.lines("delivery", "result=delivered") {
		if !strings.Contains(d, "tls_auth=verified") || !strings.Contains(d, "tls_level=verify") {
			t.Errorf("delivery line not over verified TLS:\n%s", d)
		}
	}
	var asked, plain int
	for _, m := range hop.messages(t) {
		body := hop.body(t, m)
		switch {
		case m.RequireTLS && strings.Contains(body, "Subject: requiretls"):
			asked++
		case !m.RequireTLS && strings.Contains(body, "Subject: protected"):
			plain++
		}
	}
	if asked != 1 || plain != 1 {
		t.Errorf("the next hop queued %d REQUIRETLS and %d other messages, want 1 and 1", asked, plain)
	}
	if log, _ := os.ReadFile(hop.log); !bytes.Contains(log, []byte(`info tls sid=`)) {
		t.Errorf("the next hop logged no TLS session:\n%s", log)
	}

	// Postfix verifies for mx.test but does not offer REQUIRETLS.
	pf := startTLSPostfix(t, pki, "good", "may")
	toPostfix := tlsSendInstance(t, pf.addr, map[string]string{"tlscafile": pki.file("ca.pem")}, "%s verify match=mx.test")
	// (from b@gw.test, an address Postfix takes, for the bounce below)
	id := toPostfix.injectRequireTLS(t, "b@gw.test", "b@gw.test", "Subject: to postfix\n\nbody\n")
	waitFor(t, "the failure at Postfix", 20*time.Second, func() bool {
		return len(toPostfix.lines("delivery", "qid="+id, "result=failed")) == 1
	})
	f := toPostfix.lines("delivery", "qid="+id, "result=failed")[0]
	for _, want := range []string{"status=5.7.10", "does not offer REQUIRETLS", "tls=yes", "tls_auth=verified"} {
		if !strings.Contains(f, want) {
			t.Errorf("the failure's line lacks %q:\n%s", want, f)
		}
	}
	// Its bounce, REQUIRETLS too, is not dropped for Postfix's want of
	// REQUIRETLS (RFC 8689 5): it goes over the verified session
	// without the parameter, and the log says so.
	// (the sink's file is read once it is whole: it ends with the
	// report's closing boundary)
	waitFor(t, "the bounce through Postfix", 20*time.Second, func() bool {
		txs := pf.inside.transactions()
		return len(toPostfix.lines("delivery", "rcpt=b@gw.test", "result=delivered", "tls_auth=verified")) == 1 &&
			len(txs) == 1 && strings.HasSuffix(strings.TrimRight(txs[0], "\n"), "--")
	})
	if l := toPostfix.lines("requiretls_not_offered"); len(l) != 1 || !strings.Contains(l[0], `action="report sent without REQUIRETLS"`) {
		t.Errorf("requiretls_not_offered lines %q, want one", l)
	}
	if tx := pf.inside.transactions()[0]; !strings.Contains(tx, "report-type=delivery-status") || !strings.Contains(tx, "text/rfc822-headers") {
		t.Errorf("Postfix passed on something other than the bounce:\n%s", tx)
	}

	// The gw-smtpd hop at level may: TLS, REQUIRETLS offered, but its
	// certificate is checked against no name.
	lax := tlsSendInstance(t, hopAddr, map[string]string{"tlscafile": pki.file("ca.pem")})
	id = lax.injectRequireTLS(t, "a@src.test", "b@gw.test", "Subject: at may\n\nbody\n")
	waitFor(t, "the failure at may", 20*time.Second, func() bool {
		return len(lax.lines("delivery", "qid="+id, "result=failed")) == 1
	})
	if f := lax.lines("delivery", "qid="+id, "result=failed")[0]; !strings.Contains(f, "status=5.7.10") || !strings.Contains(f, "not authenticated") {
		t.Errorf("the failure at may:\n%s", f)
	}
	// (the bounces to a@src.test go to the hop too: count b@gw.test's)
	n := 0
	for _, m := range hop.messages(t) {
		if m.Recipients[0].Address == "b@gw.test" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("the next hop holds %d messages for b@gw.test, want the 2 sent at verify", n)
	}
}

// TestSendRequireTLSBounce: RFC 8689 5 on the reports about a REQUIRETLS
// message. gw-send carries a REQUIRETLS message, RET=FULL, to a gw-smtpd
// hop over verified TLS; the hop refuses its recipient for good. The
// bounce goes back to the sender through the same hop: with REQUIRETLS
// on MAIL (the hop queues it with the R item), and returning the
// message's headers only, RET=FULL notwithstanding.
func TestSendRequireTLSBounce(t *testing.T) {
	pki := newTestPKI(t)
	cert, _ := os.ReadFile(pki.file("good.pem"))
	key, _ := os.ReadFile(pki.file("good.key"))
	hop := newSMTPDInstance(t, map[string]string{"servercert.pem": string(cert) + string(key), "rcpthosts": "gw.test\nsrc.test\n"})
	hopAddr := hop.standalone(t, nil)
	sender := tlsSendInstance(t, hopAddr, map[string]string{"tlscafile": pki.file("ca.pem")}, "%s verify match=mx.test")

	id := sender.injectEnvelope(t, "Fa@src.test\x00DRET=FULL\x00R\x00Tb@refused.test\x00\x00",
		"Subject: secret subject\n\nsecret body\n")
	waitFor(t, "the refusal at the hop", 20*time.Second, func() bool {
		return len(sender.lines("delivery", "qid="+id, "result=failed")) == 1
	})
	var bounce string
	waitFor(t, "the bounce at the hop", 20*time.Second, func() bool {
		for _, m := range hop.messages(t) {
			if m.Sender == "" && len(m.Recipients) == 1 && m.Recipients[0].Address == "a@src.test" {
				if !m.RequireTLS {
					t.Fatalf("the bounce reached the hop without REQUIRETLS")
				}
				bounce = hop.body(t, m)
				return true
			}
		}
		return false
	})
	if !strings.Contains(bounce, "Content-Type: text/rfc822-headers") || !strings.Contains(bounce, "Subject: secret subject") {
		t.Errorf("the bounce does not return the headers:\n%s", bounce)
	}
	if strings.Contains(bounce, "secret body") || strings.Contains(bounce, "message/rfc822") {
		t.Errorf("the bounce of a REQUIRETLS message returns its body:\n%s", bounce)
	}
	// the hop has it: the line follows once the reply is in
	var l []string
	waitFor(t, "the bounce's delivery line", 20*time.Second, func() bool {
		l = sender.lines("delivery", "rcpt=a@src.test", "result=delivered")
		return len(l) == 1
	})
	if !strings.Contains(l[0], "tls_auth=verified") {
		t.Errorf("the bounce went without verified TLS:\n%s", l[0])
	}
}

// injectEnvelope queues body with the real gw-queue under env, an
// envelope as written on gw-queue's fd 1, and returns its id.
func (in *sendInstance) injectEnvelope(t *testing.T, env, body string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Write([]byte(env))
	w.Close()
	cmd := exec.Command(bin("gw-queue"))
	cmd.Env = append(os.Environ(), "GW_QUEUE="+in.queue)
	cmd.Stdin = strings.NewReader(body)
	cmd.Stdout = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gw-queue: %v: %s", err, stderr.String())
	}
	m := sendQid.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("gw-queue logged no qid: %q", stderr.String())
	}
	return m[1]
}

// injectRequireTLS queues one message whose envelope carries REQUIRETLS
// (the R item) with the real gw-queue, and returns its id.
func (in *sendInstance) injectRequireTLS(t *testing.T, sender, rcpt, body string) string {
	t.Helper()
	return in.injectEnvelope(t, "F"+sender+"\x00R\x00T"+rcpt+"\x00\x00", body)
}
