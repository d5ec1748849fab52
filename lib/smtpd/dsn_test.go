package smtpd

import (
	"testing"

	"gw/lib/dsn"
	"gw/lib/envelope"
)

// TestWithDSNAfterMilters: recipients a milter keeps keep their DSN
// parameters, one it adds has none, and the message's stay.
func TestWithDSNAfterMilters(t *testing.T) {
	before := envelope.Envelope{Sender: "a@example.org", DSN: dsn.Mail{Ret: dsn.RetHdrs}}
	before.Add("u@example.com", dsn.Rcpt{Notify: dsn.NotifyNever})
	before.Add("v@example.com", dsn.Rcpt{Notify: dsn.NotifySuccess})
	after := withDSN(before, "b@example.org", []string{"v@example.com", "new@example.com"})
	if after.Sender != "b@example.org" || after.DSN != before.DSN || len(after.Recipients) != 2 {
		t.Fatalf("envelope %+v", after)
	}
	if after.RcptDSNOf(0).Notify != dsn.NotifySuccess || !after.RcptDSNOf(1).IsZero() {
		t.Errorf("recipients' DSN %+v", after.RcptDSN)
	}
}
