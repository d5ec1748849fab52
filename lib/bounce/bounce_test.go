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

func TestReportParses(t *testing.T) {
	r := Report{
		ReportingMTA: "gw.test", From: "MAILER-DAEMON@gw.test", To: "a@x.test", QueueID: "0123456789abc",
		Arrival: time.Unix(1e9, 0), Date: time.Unix(1e9+60, 0),
		Recipients: []Recipient{
			{Address: "b@y.test", Action: "failed", Status: "5.1.1", RemoteMTA: "mx.y.test",
				DiagnosticType: "smtp", Diagnostic: "550 5.1.1 no\r\nInjected: yes"},
			{Address: "c@y.test", Action: "failed", Status: "5.4.7", DiagnosticType: "x-gw", Diagnostic: "message too old"},
			{Address: "d@y.test", Action: "failed", Status: "5.0.0"},
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
		"Remote-MTA: dns; mx.y.test", "Diagnostic-Code: smtp; 550 5.1.1 no??Injected: yes", "Final-Recipient: rfc822; c@y.test",
		"Action: failed", "Diagnostic-Code: x-gw; message too old", "Final-Recipient: rfc822; d@y.test\nAction: failed\nStatus: 5.0.0"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if n := strings.Count(status, "Diagnostic-Code:"); n != 2 {
		t.Errorf("%d Diagnostic-Code fields, want 2: none for a recipient without one", n)
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
