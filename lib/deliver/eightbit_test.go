package deliver

import (
	"strings"
	"testing"

	"gw/lib/dsn"
)

// TestEightBitToServerWithout8BITMIME: a server that does not offer
// 8BITMIME gets MAIL without BODY=, and an 8-bit body in quoted-printable;
// a message that cannot be converted fails 5.6.3 before DATA, the
// transaction is reset and the session carries the next message; a 7-bit
// message goes out as it is.
func TestEightBitToServerWithout8BITMIME(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 SIZE 100000\r\n", answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	send := func(msg string) error {
		t.Helper()
		d, err := s.Start("a@x.test", int64(len(msg)), false, dsn.Mail{})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddRcpt("b@y.test", dsn.Rcpt{}); err != nil {
			t.Fatal(err)
		}
		if err := d.Body(strings.NewReader(msg)); err != nil {
			d.Abort()
			return err
		}
		_, err = d.Commit()
		return err
	}

	if err := send("Subject: x\n\nGr\xfc\xdfe\n"); err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n"
	if got := <-sv.bodies; got != want {
		t.Errorf("body on the wire %q, want %q", got, want)
	}

	err := send("Subject: Gr\xfc\xdfe\n\nbody\n")
	rp, isReply := err.(*Reply)
	if !isReply || rp.Code != 554 || !strings.HasPrefix(rp.Text, "5.6.3 ") || rp.Status() != "5.6.3" || !Permanent(err) {
		t.Fatalf("8-bit header to a server without 8BITMIME: %v", err)
	}
	if !s.Reusable() {
		t.Fatal("session unusable after a message it could not carry")
	}

	if err := send("Subject: y\n\nascii\n"); err != nil {
		t.Fatal(err)
	}
	if got := <-sv.bodies; got != "Subject: y\r\n\r\nascii\r\n" {
		t.Errorf("7-bit body changed: %q", got)
	}
	var mails, datas, rsets int
	for _, c := range sv.commands() {
		switch {
		case strings.HasPrefix(c, "MAIL"):
			mails++
			if strings.Contains(c, "BODY=") {
				t.Errorf("%q to a server without 8BITMIME", c)
			}
		case c == "DATA":
			datas++
		case c == "RSET":
			rsets++
		}
	}
	if mails != 3 || datas != 2 || rsets < 1 {
		t.Errorf("commands %q: want 3 MAIL, 2 DATA and an RSET", sv.commands())
	}
}
