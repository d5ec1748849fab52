package deliver

import (
	"strings"
	"testing"

	"gw/lib/dsn"
)

// TestDSNPassedOn: a server that offers DSN gets RET and ENVID on MAIL
// and NOTIFY and ORCPT on RCPT, as RFC 3461 writes them; one that does
// not gets none of them, and OffersDSN tells gw-send to honour the
// request itself.
func TestDSNPassedOn(t *testing.T) {
	dm := dsn.Mail{Ret: dsn.RetHdrs, EnvID: "QQ 1+2"}
	dr := dsn.Rcpt{Notify: dsn.NotifySuccess | dsn.NotifyDelay, ORcptType: "rfc822", ORcpt: "b+old@y.test"}
	for _, offer := range []bool{true, false} {
		ehlo := "250-test\r\n250 SIZE 100000\r\n"
		if offer {
			ehlo = "250-test\r\n250-dsn\r\n250 SIZE 100000\r\n"
		}
		sv := &server{ehlo: ehlo, answer: ok}
		s := dial(t, sv.start(t), Config{})
		if s.OffersDSN() != offer {
			t.Errorf("OffersDSN() = %v for EHLO %q", s.OffersDSN(), ehlo)
		}
		d, err := s.Start("a@x.test", 10, false, dm)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddRcpt("b@y.test", dr); err != nil {
			t.Fatal(err)
		}
		if err := d.AddRcpt("c@y.test", dsn.Rcpt{ORcptType: "x400", ORcpt: "/G=c/"}); err != nil {
			t.Fatal(err)
		}
		d.Body(strings.NewReader("Subject: x\n\nbody\n"))
		if _, err := d.Commit(); err != nil {
			t.Fatal(err)
		}
		<-sv.bodies
		s.Close()
		want := []string{"MAIL FROM:<a@x.test> SIZE=10", "RCPT TO:<b@y.test>", "RCPT TO:<c@y.test>"}
		if offer {
			want = []string{"MAIL FROM:<a@x.test> SIZE=10 RET=HDRS ENVID=QQ+201+2B2",
				"RCPT TO:<b@y.test> NOTIFY=SUCCESS,DELAY ORCPT=RFC822;b+2Bold@y.test",
				"RCPT TO:<c@y.test>"} // go-smtp writes no x400 ORCPT: left out
		}
		var got []string
		for _, c := range sv.commands() {
			if strings.HasPrefix(c, "MAIL") || strings.HasPrefix(c, "RCPT") {
				got = append(got, c)
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("DSN offered %v: commands\n%s\nwant\n%s", offer, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
