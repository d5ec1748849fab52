package bounce

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	cases := []struct {
		text string
		perm bool
		want string
	}{
		{"mx said: 550 5.1.1 no such user", true, "5.1.1"},
		{"no mail host (#5.1.2)", true, "5.1.2"},
		{"451 4.3.0 later", false, "4.3.0"},
		{"451 4.3.0 later", true, "5.0.0"}, // a lifetime expiry: the class is ours
		{"451 4.2.0 later; too long in the queue (#5.4.7)", true, "5.4.7"},
		{"connection refused", false, "4.0.0"},
		{"version 1.2.3.4", true, "5.0.0"},
		// an address is no status, nor a port
		{"mx[10.5.4.1]:25 said: 550 no such user (in reply to RCPT TO)", true, "5.0.0"},
		{"mx[192.0.2.4]:25: dial tcp 192.0.2.4:25: connect: connection refused (#4.4.1)", false, "4.4.1"},
		{"mx[192.0.4.4]:2525: dial tcp 192.0.4.4:2525: i/o timeout", false, "4.0.0"},
		// the last of gw's own codes of the class is the outcome
		{"mx said: 554 5.7.1 go away (in reply to greeting) (#4.7.1); I'm not going to try again (#5.4.7)", true, "5.4.7"},
		{"mx said: 554 5.7.1 go away (in reply to greeting) (#4.7.1)", false, "4.7.1"},
		{"mx said: 452-4.2.2 full", false, "4.2.2"},
	}
	for _, c := range cases {
		if got := Status(c.text, c.perm); got != c.want {
			t.Errorf("Status(%q, %v) = %q, want %q", c.text, c.perm, got, c.want)
		}
	}
}

func TestReportParses(t *testing.T) {
	r := Report{
		ReportingMTA: "gw.test", From: "MAILER-DAEMON@gw.test", To: "a@x.test", QueueID: "0123456789abc",
		Arrival: time.Unix(1e9, 0), Date: time.Unix(1e9+60, 0),
		Recipients: []Recipient{
			{Address: "b@y.test", Action: "failed", Status: "5.1.1", RemoteMTA: "mx.y.test", Diagnostic: "mx.y.test said: 550 5.1.1 no\r\nInjected: yes"},
			{Address: "c@y.test", Action: "failed", Status: "5.4.7", Diagnostic: "message too old"},
		},
		Headers: []byte("Received: x\nSubject: hello\n"),
	}
	msg, err := mail.ReadMessage(bytes.NewReader(r.Message()))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v %v", mt, params, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "message/delivery-status") {
			status = string(b)
		}
	}
	if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != "text/rfc822-headers" {
		t.Fatalf("parts %q", types)
	}
	for _, want := range []string{"Reporting-MTA: dns; gw.test", "Final-Recipient: rfc822; b@y.test", "Status: 5.1.1",
		"Diagnostic-Code: smtp; mx.y.test said: 550 5.1.1 no??Injected: yes", "Final-Recipient: rfc822; c@y.test", "Action: failed"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "\nInjected:") {
		t.Error("a diagnostic grew a field")
	}
}

func TestReadHeaders(t *testing.T) {
	h, err := ReadHeaders(strings.NewReader("A: 1\nB: 2\n\nbody\n"))
	if err != nil || string(h) != "A: 1\nB: 2\n" {
		t.Fatalf("%q %v", h, err)
	}
	h, _ = ReadHeaders(strings.NewReader(strings.Repeat("X: y\n", 1<<15)))
	if len(h) > MaxHeaders {
		t.Fatalf("%d bytes of headers", len(h))
	}
}

// TestReportToQuoted: the To: field shows the sender as its path is
// written, quoted, and a control character in a stored address never
// reaches the header.
func TestReportToQuoted(t *testing.T) {
	for to, want := range map[string]string{
		"s@gw.test":               "To: <s@gw.test>\n",
		"a> b@gw.test":            "To: <\"a> b\"@gw.test>\n",
		"x\x1b[2J\nBcc: e@x.test": "To: <x?[2J?Bcc: e@x.test>\n",
	} {
		r := Report{ReportingMTA: "gw.test", From: "MAILER-DAEMON@gw.test", To: to, QueueID: "1"}
		if m := string(r.Message()); !strings.Contains(m, "\n"+want) {
			t.Errorf("To %q: report has no %q:\n%s", to, want, m)
		}
	}
}

// TestReportDSNFields: ENVID comes back as Original-Envelope-Id, ORCPT
// as Original-Recipient before Final-Recipient (RFC 3464 2.2.1, 2.3.1),
// a success notice says so without a Diagnostic-Code, and RET=FULL
// returns the message as message/rfc822.
func TestReportDSNFields(t *testing.T) {
	r := Report{
		ReportingMTA: "gw.test", From: "MAILER-DAEMON@gw.test", To: "a@x.test", QueueID: "0123456789abc",
		Date: time.Unix(1e9+60, 0), EnvID: "QQ+1",
		Recipients: []Recipient{{Address: "b@y.test", Action: "relayed", Status: "2.0.0", RemoteMTA: "mx.y.test",
			OriginalRecipient: "rfc822;b+old@y.test"}},
		Full: []byte("Subject: hello\n\nthe body\n"),
	}
	m := string(r.Message())
	for _, want := range []string{
		"Subject: Delivery Status Notification (Success)\n",
		"Original-Envelope-Id: QQ+1\nReporting-MTA: dns; gw.test\n",
		"\nOriginal-Recipient: rfc822;b+old@y.test\nFinal-Recipient: rfc822; b@y.test\nAction: relayed\nStatus: 2.0.0\nRemote-MTA: dns; mx.y.test\n\n",
		"Content-Type: message/rfc822\n",
		"\nthe body\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("report lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "Diagnostic-Code") || strings.Contains(m, "text/rfc822-headers") {
		t.Errorf("success notice with a Diagnostic-Code or headers part:\n%s", m)
	}
}
