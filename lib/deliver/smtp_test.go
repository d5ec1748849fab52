package deliver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/dsn"
	"gw/lib/route"
)

// server is a scripted SMTP or LMTP server on loopback: it answers each
// command line from a function of it; the DATA body is collected whole.
type server struct {
	greeting    string              // "" is 220 test ESMTP
	ehlo        string              // reply to EHLO/LHLO
	answer      func(string) string // reply to other commands; "END" after the final dot
	lmtpReplies []string            // replies after the final dot, instead of answer("END")
	starttls    string              // reply to STARTTLS; "220…" starts TLS with cert
	cert        *tls.Certificate    // for STARTTLS
	data        func(net.Conn) bool // after 354 instead of reading the body; false ends the session
	mu          sync.Mutex          // guards cmds
	cmds        []string            // every command line, in order
	bodies      chan string         // each body, dot-stuffing kept, final dot not
	conns       chan struct{}       // a value a connection accepted
	tlsDone     chan *tls.ConnectionState
	host        route.Host
	listener    net.Listener
	readTimeout time.Duration
}

func (sv *server) start(t *testing.T) route.Host {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if sv.greeting == "" {
		sv.greeting = "220 test ESMTP"
	}
	sv.bodies = make(chan string, 8)
	sv.conns = make(chan struct{}, 8)
	sv.tlsDone = make(chan *tls.ConnectionState, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sv.conns <- struct{}{}
			go sv.serve(c)
		}
	}()
	a := netip.MustParseAddrPort(l.Addr().String())
	return route.Host{Name: "test", Addr: a.Addr(), Port: int(a.Port())}
}

func (sv *server) commands() []string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return append([]string(nil), sv.cmds...)
}

func (sv *server) serve(c net.Conn) {
	defer func() { c.Close() }()
	r := bufio.NewReader(c)
	c.Write([]byte(sv.greeting + "\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		sv.mu.Lock()
		sv.cmds = append(sv.cmds, cmd)
		sv.mu.Unlock()
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "EHLO"), strings.HasPrefix(up, "LHLO"):
			c.Write([]byte(sv.ehlo))
		case up == "STARTTLS":
			c.Write([]byte(sv.starttls + "\r\n"))
			if !strings.HasPrefix(sv.starttls, "220") {
				continue
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*sv.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			st := tc.ConnectionState()
			sv.tlsDone <- &st
			c = tc
			r = bufio.NewReader(c)
		case up == "DATA":
			c.Write([]byte("354 go\r\n"))
			if sv.data != nil {
				if !sv.data(c) {
					return
				}
				continue
			}
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			sv.bodies <- b.String()
			if sv.lmtpReplies != nil {
				for _, rp := range sv.lmtpReplies {
					c.Write([]byte(rp + "\r\n"))
				}
			} else {
				c.Write([]byte(sv.answer("END") + "\r\n"))
			}
		case up == "QUIT":
			c.Write([]byte("221 bye\r\n"))
			return
		default:
			c.Write([]byte(sv.answer(cmd) + "\r\n"))
		}
	}
}

func ok(string) string { return "250 ok" }

func dial(t *testing.T, h route.Host, cfg Config) Session {
	t.Helper()
	if cfg.Helo == "" {
		cfg.Helo = "gw.test"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	s, err := Dial(context.Background(), h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSMTPPerRecipient: a 5xx to one RCPT fails that recipient only, a
// 4xx defers it, the others are delivered in the same transaction; MAIL
// carries SIZE= and BODY=8BITMIME when offered; the body is dot-stuffed.
// PIPELINING offered or not, the client goes in lock step.
func TestSMTPPerRecipient(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		ehlo := "250-test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
		if pipe {
			ehlo = "250-test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
		}
		sv := &server{ehlo: ehlo, answer: func(cmd string) string {
			switch {
			case strings.Contains(cmd, "bad@"):
				return "550 5.1.1 no such user"
			case strings.Contains(cmd, "later@"):
				return "451 4.2.0 try later"
			}
			return "250 ok"
		}}
		s := dial(t, sv.start(t), Config{ConnectTimeout: time.Second})
		d, err := s.Start("a@x.test", 10, false, dsn.Mail{})
		if err != nil {
			t.Fatal(err)
		}
		var early []error
		for _, rc := range []string{"good@y.test", "bad@y.test", "later@y.test"} {
			early = append(early, d.AddRcpt(rc, dsn.Rcpt{}))
		}
		if early[0] != nil || !Permanent(early[1]) || early[2] == nil || Permanent(early[2]) {
			t.Errorf("pipe=%v: AddRcpt gave %v", pipe, early)
		}
		if err := d.Body(strings.NewReader("Subject: t\n\n.dot\n")); err != nil {
			t.Fatal(err)
		}
		res, err := d.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if res[0] != nil || !Permanent(res[1]) || res[2] == nil || Permanent(res[2]) {
			t.Errorf("pipe=%v: outcomes %v", pipe, res)
		}
		var rp *Reply
		if !errors.As(res[1], &rp) || rp.Code != 550 || rp.Text != "5.1.1 no such user" || !strings.HasPrefix(rp.Host, "test[") {
			t.Errorf("pipe=%v: refusal %#v", pipe, res[1])
		}
		if got := <-sv.bodies; got != "Subject: t\r\n\r\n..dot\r\n" {
			t.Errorf("pipe=%v: body %q", pipe, got)
		}
		s.Close()
		cmds := sv.commands()
		if cmds[0] != "EHLO gw.test" {
			t.Errorf("pipe=%v: greeting %q", pipe, cmds[0])
		}
		if !strings.Contains(cmds[1], "SIZE=10") || !strings.Contains(cmds[1], "BODY=8BITMIME") {
			t.Errorf("pipe=%v: MAIL without SIZE= or BODY=: %q", pipe, cmds[1])
		}
	}
}

// TestLMTPPerRecipient: LMTP's replies after the final dot, one an
// accepted recipient, give each its own outcome; an address given twice
// goes once and both get its outcome.
func TestLMTPPerRecipient(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 PIPELINING\r\n", answer: func(cmd string) string {
		if strings.Contains(cmd, "gone@") {
			return "550 5.1.1 gone"
		}
		return "250 ok"
	}, lmtpReplies: []string{"250 2.0.0 a ok", "452 4.2.2 b over quota"}}
	s := dial(t, sv.start(t), Config{LMTP: true})
	defer s.Close()
	d, err := s.Start("", 0, false, dsn.Mail{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range []string{"a@y.test", "gone@y.test", "b@y.test", "a@y.test"} {
		d.AddRcpt(rc, dsn.Rcpt{})
	}
	if err := d.Body(strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || !Permanent(res[1]) || res[2] == nil || Permanent(res[2]) || res[3] != nil {
		t.Errorf("outcomes %v", res)
	}
	if !strings.Contains(res[2].Error(), "452 4.2.2 b over quota") {
		t.Errorf("LMTP refusal %q", res[2])
	}
	if !s.Reusable() {
		t.Error("LMTP session not reusable after per-recipient replies")
	}
	if cmds := sv.commands(); cmds[0] != "LHLO gw.test" {
		t.Errorf("greeting %q", cmds[0])
	}
}

// TestLMTPRepliesCutShort: the connection lost after the first of two
// LMTP replies: the first recipient is delivered, the second deferred.
func TestLMTPRepliesCutShort(t *testing.T) {
	sv := &server{ehlo: "250 test\r\n", answer: ok, lmtpReplies: []string{"250 2.0.0 a ok"}}
	sv.data = func(c net.Conn) bool {
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil || l == ".\r\n" {
				break
			}
		}
		c.Write([]byte("250 2.0.0 a ok\r\n"))
		return false
	}
	s := dial(t, sv.start(t), Config{LMTP: true})
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	d.AddRcpt("a@y.test", dsn.Rcpt{})
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	if err := d.Body(strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	var ce *ConnError
	if res[0] != nil || !errors.As(res[1], &ce) || Permanent(res[1]) {
		t.Errorf("outcomes %v", res)
	}
	if s.Reusable() {
		t.Error("session reusable after its connection was lost")
	}
}

func TestTimeoutOnSilentServer(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			time.Sleep(3 * time.Second)
			c.Close()
		}
	}()
	a := netip.MustParseAddrPort(l.Addr().String())
	start := time.Now()
	_, err := Dial(context.Background(), route.Host{Name: "silent", Addr: a.Addr(), Port: int(a.Port())},
		Config{Helo: "gw.test", Timeout: 200 * time.Millisecond})
	if err == nil || Permanent(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("Dial to a silent server: %v after %v", err, time.Since(start))
	}
}

// endless is a message that never ends: lines of text.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
		if i%72 == 71 {
			p[i] = '\n'
		}
	}
	return len(p), nil
}

// TestBodyWriteDeadline: a receiver that stops reading after 354 cannot
// hang a delivery: the body's writes have deadlines too (go-smtp sets
// none), and the failure is temporary, after DATA began.
func TestBodyWriteDeadline(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	// 8BITMIME: the body streams (without it, it is read whole first, to
	// be made 7-bit, and an endless one is refused before DATA).
	sv := &server{ehlo: "250-test\r\n250 8BITMIME\r\n", answer: ok, data: func(net.Conn) bool {
		<-stop // read nothing more
		return false
	}}
	s := dial(t, sv.start(t), Config{Timeout: 300 * time.Millisecond})
	defer s.Close()
	d, err := s.Start("a@x.test", 0, false, dsn.Mail{})
	if err != nil {
		t.Fatal(err)
	}
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	done := make(chan error, 1)
	go func() { done <- d.Body(endless{}) }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Body still writing to a receiver that reads nothing")
	}
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Timeout() || Permanent(err) {
		t.Fatalf("Body to a receiver that stopped reading: %v", err)
	}
	if !d.(interface{ DataSent() bool }).DataSent() || s.Reusable() {
		t.Errorf("after a body write timeout: DataSent %v, Reusable %v", d.(interface{ DataSent() bool }).DataSent(), s.Reusable())
	}
}

// TestLoneCROnTheWire: no lone CR or LF reaches the receiver, a lone CR
// becomes a space, and nothing inside the message ends the data.
func TestLoneCROnTheWire(t *testing.T) {
	sv := &server{ehlo: "250 test\r\n", answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	if err := d.Body(strings.NewReader("Subject: x\r\n\r\nx\r.\r\nRSET\r.\rMAIL FROM:<e@vil>\n.\nend\r")); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Commit(); err != nil || res[0] != nil {
		t.Fatalf("commit: %v %v", res, err)
	}
	want := "Subject: x\r\n\r\nx .\r\nRSET . MAIL FROM:<e@vil>\r\n..\r\nend \r\n"
	if got := <-sv.bodies; got != want {
		t.Errorf("body on the wire %q, want %q", got, want)
	}
}

// TestSMTPAllRefusedAndReuse: when every RCPT is refused no DATA goes
// out, the transaction is reset, and the session carries the next
// message (saying EHLO again, as go-smtp does after RSET).
func TestSMTPAllRefusedAndReuse(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", answer: func(cmd string) string {
		if strings.Contains(cmd, "<bad") {
			return "550 5.1.1 no such user"
		}
		return "250 ok"
	}}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	d.AddRcpt("bad@y.test", dsn.Rcpt{})
	d.AddRcpt("bad2@y.test", dsn.Rcpt{})
	if err := d.Body(strings.NewReader("never sent\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil || len(res) != 2 || !Permanent(res[0]) || !Permanent(res[1]) {
		t.Fatalf("all refused: %v, %v", res, err)
	}
	if dd, ok := d.(interface{ DataSent() bool }); !ok || dd.DataSent() {
		t.Errorf("DataSent after no body")
	}
	if !s.Reusable() {
		t.Fatal("session not reusable after a refused transaction")
	}
	for i, body := range []string{"second\n", "third\n"} {
		d, err = s.Start("a@x.test", 0, false, dsn.Mail{})
		if err != nil {
			t.Fatal(err)
		}
		d.AddRcpt("good@y.test", dsn.Rcpt{})
		if err := d.Body(strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if res, err := d.Commit(); err != nil || res[0] != nil {
			t.Fatalf("message %d: %v, %v", i+2, res, err)
		}
		if got := <-sv.bodies; got != strings.ReplaceAll(body, "\n", "\r\n") {
			t.Errorf("message %d: body %q", i+2, got)
		}
	}
	if n := len(sv.conns); n != 1 {
		t.Errorf("%d connections for three messages", n)
	}
	var seq []string
	for _, c := range sv.commands() {
		seq = append(seq, strings.Fields(c)[0])
	}
	want := "EHLO MAIL RCPT RCPT RSET EHLO MAIL RCPT DATA MAIL RCPT DATA"
	if got := strings.Join(seq, " "); !strings.HasPrefix(got, want) {
		t.Errorf("commands %s, want %s", got, want)
	}
	if cmds := sv.commands(); !strings.Contains(cmds[1], "BODY=8BITMIME") {
		t.Errorf("MAIL without BODY=8BITMIME to a server offering it: %q", cmds[1])
	}
}

// TestSMTPAbortThenReuse: Abort before DATA resets the transaction and
// leaves the session usable.
func TestSMTPAbortThenReuse(t *testing.T) {
	sv := &server{ehlo: "250 test\r\n", answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	d.Abort()
	if !s.Reusable() {
		t.Fatal("not reusable after Abort")
	}
	d, err := s.Start("a@x.test", 0, false, dsn.Mail{})
	if err != nil {
		t.Fatal(err)
	}
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	if err := d.Body(strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Commit(); err != nil || res[0] != nil {
		t.Fatalf("after Abort: %v %v", res, err)
	}
}

// TestSizeAndUTF8Refused: a message over the server's SIZE and one that
// needs SMTPUTF8 from a server without it are refused before MAIL, as
// permanent failures; the session stays usable.
func TestSizeAndUTF8Refused(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 SIZE 1000\r\n", answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	_, err := s.Start("a@x.test", 5000, false, dsn.Mail{})
	var rp *Reply
	if !errors.As(err, &rp) || rp.Code != 552 || !strings.HasPrefix(rp.Text, "5.3.4 ") {
		t.Errorf("over SIZE: %v", err)
	}
	_, err = s.Start("jörg@x.test", 10, true, dsn.Mail{})
	if !errors.As(err, &rp) || rp.Code != 553 || !Permanent(err) {
		t.Errorf("SMTPUTF8 not offered: %v", err)
	}
	if !s.Reusable() {
		t.Error("session not reusable")
	}
	for _, c := range sv.commands() {
		if strings.HasPrefix(c, "MAIL") {
			t.Errorf("%q sent", c)
		}
	}
	if _, err := s.Start("a@x.test", 999, false, dsn.Mail{}); err != nil {
		t.Errorf("under SIZE: %v", err)
	}
}

// TestSMTP421AtRcpt: a 421 ends the session: the recipient is deferred,
// Body fails without sending anything, and the session is not reused.
func TestSMTP421AtRcpt(t *testing.T) {
	sv := &server{ehlo: "250 test\r\n", answer: func(cmd string) string {
		if strings.HasPrefix(cmd, "RCPT") {
			return "421 4.3.2 shutting down"
		}
		return "250 ok"
	}}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	if err := d.AddRcpt("b@y.test", dsn.Rcpt{}); err == nil || Permanent(err) {
		t.Errorf("AddRcpt: %v", err)
	}
	if err := d.Body(strings.NewReader("x\n")); err == nil {
		t.Error("Body after 421")
	}
	d.Abort()
	if s.Reusable() {
		t.Error("reusable after 421")
	}
}

func testCert(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestSTARTTLS: STARTTLS when offered, after an EHLO with the instance's
// name, and EHLO again over TLS; the message goes over TLS.
func TestSTARTTLS(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250-STARTTLS\r\n250 8BITMIME\r\n", starttls: "220 go ahead",
		cert: testCert(t), answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	if !s.TLS() {
		t.Fatal("no TLS")
	}
	if st := <-sv.tlsDone; !st.HandshakeComplete {
		t.Fatal("handshake")
	}
	d, _ := s.Start("a@x.test", 0, false, dsn.Mail{})
	d.AddRcpt("b@y.test", dsn.Rcpt{})
	if err := d.Body(strings.NewReader("secret\n")); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Commit(); err != nil || res[0] != nil {
		t.Fatalf("over TLS: %v %v", res, err)
	}
	if got := <-sv.bodies; got != "secret\r\n" {
		t.Errorf("body %q", got)
	}
	cmds := sv.commands()
	if len(cmds) < 3 || cmds[0] != "EHLO gw.test" || cmds[1] != "STARTTLS" || cmds[2] != "EHLO gw.test" {
		t.Errorf("commands %q", cmds)
	}
}

// TestSTARTTLSRefusedOrOff: a STARTTLS refused goes on in the clear;
// tlsremote 0 (NoTLS) never says it.
func TestSTARTTLSRefusedOrOff(t *testing.T) {
	for _, noTLS := range []bool{false, true} {
		sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n", starttls: "454 4.7.0 TLS not available", answer: ok}
		s := dial(t, sv.start(t), Config{NoTLS: noTLS})
		if s.TLS() {
			t.Errorf("noTLS=%v: TLS on", noTLS)
		}
		d, err := s.Start("a@x.test", 0, false, dsn.Mail{})
		if err != nil {
			t.Fatal(err)
		}
		d.AddRcpt("b@y.test", dsn.Rcpt{})
		if err := d.Body(strings.NewReader("clear\n")); err != nil {
			t.Fatal(err)
		}
		if res, err := d.Commit(); err != nil || res[0] != nil {
			t.Fatalf("noTLS=%v: %v %v", noTLS, res, err)
		}
		s.Close()
		sent := false
		for _, c := range sv.commands() {
			sent = sent || c == "STARTTLS"
		}
		if sent == noTLS {
			t.Errorf("noTLS=%v: STARTTLS sent %v", noTLS, sent)
		}
	}
}

// TestSTARTTLSHandshakeFails: a server whose handshake fails gets the
// mail in the clear on a second connection (opportunistic TLS, as
// Postfix's "may"), and a server that cannot be reached at all is still a
// temporary failure of the host.
func TestSTARTTLSHandshakeFails(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n", starttls: "220 go ahead", answer: ok}
	sv.cert = &tls.Certificate{} // no certificate: the server's handshake fails
	h := sv.start(t)
	s, err := Dial(context.Background(), h, Config{Helo: "gw.test", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("after a failed handshake: %v, want a session in the clear", err)
	}
	defer s.Close()
	if s.TLS() {
		t.Errorf("session says TLS after the handshake failed")
	}
	if n := len(sv.conns); n != 2 {
		t.Errorf("%d connections, want 2 (the failed handshake, then the clear one)", n)
	}
	if got := strings.Join(sv.commands(), "|"); strings.Count(got, "STARTTLS") != 1 {
		t.Errorf("commands %q: want STARTTLS once, on the first connection", got)
	}
}

// TestReplyFlood: a server that answers one command with endless reply
// lines is cut off.
func TestReplyFlood(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220 test\r\n"))
		bufio.NewReader(c).ReadString('\n')
		line := []byte("250-" + strings.Repeat("x", 70) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	}()
	a := netip.MustParseAddrPort(l.Addr().String())
	_, err := Dial(context.Background(), route.Host{Name: "flood", Addr: a.Addr(), Port: int(a.Port())},
		Config{Helo: "gw.test", Timeout: 5 * time.Second})
	if err == nil || Permanent(err) || !errors.Is(err, errTooMuch) {
		t.Fatalf("flood: %v", err)
	}
}

// TestLowercaseEHLOKeywords: EHLO keywords are case-insensitive; a server
// that writes them in lower case still gets STARTTLS, SIZE, 8BITMIME and
// SMTPUTF8 used, and the same after the EHLO that follows an RSET.
func TestLowercaseEHLOKeywords(t *testing.T) {
	sv := &server{ehlo: "250-test says hello\r\n250-starttls\r\n250-SmtpUtf8\r\n250-8bitmime\r\n250 size 1000\r\n",
		starttls: "220 go ahead", cert: testCert(t), answer: ok}
	s := dial(t, sv.start(t), Config{})
	defer s.Close()
	if !s.TLS() {
		t.Fatal("STARTTLS offered in lower case not used")
	}
	_, err := s.Start("a@x.test", 5000, false, dsn.Mail{})
	var rp *Reply
	if !errors.As(err, &rp) || rp.Code != 552 {
		t.Errorf("over a lower-case SIZE: %v", err)
	}
	d, err := s.Start("jörg@x.test", 10, true, dsn.Mail{})
	if err != nil {
		t.Fatalf("SMTPUTF8 offered in mixed case: %v", err)
	}
	d.Abort() // RSET: the next Start says EHLO again
	if _, err := s.Start("jörg@x.test", 10, true, dsn.Mail{}); err != nil {
		t.Fatalf("after RSET: %v", err)
	}
	var mails []string
	for _, c := range sv.commands() {
		if strings.HasPrefix(c, "MAIL") {
			mails = append(mails, c)
		}
	}
	want := "MAIL FROM:<jörg@x.test> BODY=8BITMIME SIZE=10 SMTPUTF8"
	if len(mails) != 2 || mails[0] != want || mails[1] != want {
		t.Errorf("MAIL commands %q, want twice %q", mails, want)
	}
}

// TestReplyClasses: what a reply says about the message, the host or
// nothing. A 5xx greeting refuses the host, not the message: temporary,
// with the server's enhanced code in class 4 (else 4.3.2). A code no
// refusal can have (650, 354 to MAIL, garbage) is a broken server: a
// temporary failure of that host (4.5.0), the session dropped. A refused
// connection is 4.4.1. Each says where it came.
func TestReplyClasses(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadHost := route.Host{Name: "dead", Addr: netip.MustParseAddrPort(dead.Addr().String()).Addr(),
		Port: dead.Addr().(*net.TCPAddr).Port}
	dead.Close()
	mail := func(reply string) func(string) string {
		return func(cmd string) string {
			if strings.HasPrefix(cmd, "MAIL") {
				return reply
			}
			return "250 ok"
		}
	}
	cases := []struct {
		name      string
		sv        *server // nil: nothing listens
		atMail    bool    // the failure comes from Start, not Dial
		conn      bool    // a *ConnError, not a *Reply
		temporary bool
		status    string
		text      string // in the rendered error
	}{
		{"554 greeting", &server{greeting: "554 no SMTP service here"}, false, false, true, "4.3.2", "said: 554 no SMTP service here (in reply to greeting) (#4.3.2)"},
		{"554 greeting with a code", &server{greeting: "554-5.7.1 you are\r\n554 5.7.1 not welcome"}, false, false, true, "4.7.1", "554 5.7.1 you are / not welcome (in reply to greeting) (#4.7.1)"},
		{"421 greeting", &server{greeting: "421 4.3.2 busy"}, false, false, true, "4.3.2", "421 4.3.2 busy (in reply to greeting)"},
		{"650 greeting", &server{greeting: "650 x"}, false, true, true, "4.5.0", `invalid reply "650 x" (during greeting) (#4.5.0)`},
		{"garbage greeting", &server{greeting: "hello there"}, false, true, true, "4.5.0", "garbled reply"},
		{"650 at MAIL", &server{answer: mail("650 x")}, true, true, true, "4.5.0", `invalid reply "650 x" (during MAIL FROM)`},
		{"354 at MAIL", &server{answer: mail("354 go on")}, true, true, true, "4.5.0", `invalid reply "354 go on"`},
		{"570 at MAIL", &server{answer: mail("570 x")}, true, true, true, "4.5.0", `invalid reply "570 x"`},
		{"553 at MAIL", &server{answer: mail("553 5.1.8 sender refused")}, true, false, false, "5.1.8", "said: 553 5.1.8 sender refused (in reply to MAIL FROM)"},
		{"550 at MAIL, no code", &server{answer: mail("550 no")}, true, false, false, "5.0.0", "550 no (in reply to MAIL FROM)"},
		{"connection refused", nil, false, true, true, "4.4.1", "connection refused (#4.4.1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := deadHost
			if c.sv != nil {
				if c.sv.ehlo == "" {
					c.sv.ehlo = "250 test\r\n"
				}
				h = c.sv.start(t)
			}
			sess, err := Dial(context.Background(), h, Config{Helo: "gw.test", ConnectTimeout: time.Second, Timeout: 5 * time.Second})
			if c.atMail {
				if err != nil {
					t.Fatal(err)
				}
				_, err = sess.Start("a@x.test", 10, false, dsn.Mail{})
				if c.conn && sess.Reusable() {
					t.Error("the session is still usable after an invalid reply")
				}
				sess.Kill()
			} else if err == nil {
				sess.Kill()
				t.Fatal("Dial succeeded")
			}
			var ce *ConnError
			var rp *Reply
			switch {
			case c.conn && !errors.As(err, &ce), !c.conn && !errors.As(err, &rp):
				t.Fatalf("error %T %v", err, err)
			}
			var status string
			if ce != nil {
				status = ce.Status()
			} else {
				status = rp.Status()
			}
			if Permanent(err) == c.temporary || status != c.status || !strings.Contains(err.Error(), c.text) {
				t.Errorf("%v: permanent %v, status %s; want temporary %v, status %s, text %q", err, Permanent(err), status, c.temporary, c.status, c.text)
			}
		})
	}
}

func TestValidCode(t *testing.T) {
	for code, want := range map[int]bool{400: true, 421: true, 455: true, 459: true, 460: false, 499: false,
		500: true, 554: true, 559: true, 570: false, 600: false, 650: false, 250: false, 354: false, 199: false, 0: false} {
		if ValidCode(code) != want {
			t.Errorf("ValidCode(%d) = %v", code, !want)
		}
	}
}

// FuzzGreeting: whatever a server says first, the greeting is never a
// permanent failure (a 5xx greeting refuses the host, not the message),
// its status is of class 4, and its error is one line.
func FuzzGreeting(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &smtpSession{host: "mx[192.0.2.1]:25"}
		err := s.greeting(bufio.NewReader(strings.NewReader(string(data))))
		if err == nil {
			if !strings.HasPrefix(string(data), "220") {
				t.Fatalf("%q opens a session", data)
			}
			return
		}
		if Permanent(err) {
			t.Fatalf("%q: permanent %v", data, err)
		}
		var status string
		var rp *Reply
		var ce *ConnError
		switch {
		case errors.As(err, &rp):
			if !ValidCode(rp.Code) {
				t.Fatalf("%q: a reply with code %d", data, rp.Code)
			}
			status = rp.Status()
		case errors.As(err, &ce):
			status = ce.Status()
		default:
			t.Fatalf("%q: error %T %v", data, err, err)
		}
		if !enhancedCode.MatchString(status) || status[0] != '4' {
			t.Fatalf("%q: status %q", data, status)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("%q: error of more than one line: %q", data, err.Error())
		}
	})
}

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// TestPathsWrittenQuoted: a stored local part that is no dot-atom goes
// out quoted, so that nothing in it becomes an ESMTP parameter, for SMTP
// and LMTP alike; a stored address no path can carry (control character,
// parameters in its domain) fails that recipient permanently and sends
// nothing; such a sender fails the message before MAIL.
func TestPathsWrittenQuoted(t *testing.T) {
	const attack = "v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x@gw.test"
	for _, lmtp := range []bool{false, true} {
		sv := &server{ehlo: "250-test\r\n250 8BITMIME\r\n", answer: ok, lmtpReplies: []string{"250 ok", "250 ok"}}
		s := dial(t, sv.start(t), Config{ConnectTimeout: time.Second, LMTP: lmtp})
		if _, err := s.Start("s@gw.test> SIZE=1", 10, false, dsn.Mail{}); !Permanent(err) || !strings.Contains(err.Error(), "5.1.7") {
			t.Errorf("lmtp=%v: Start with parameters in the sender: %v", lmtp, err)
		}
		d, err := s.Start("a b@x.test", 10, false, dsn.Mail{})
		if err != nil {
			t.Fatal(err)
		}
		var early []error
		for _, rc := range []string{attack, "x\x1b[2J@gw.test", "y@gw.test> NOTIFY=NEVER", "ok@gw.test"} {
			early = append(early, d.AddRcpt(rc, dsn.Rcpt{}))
		}
		if early[0] != nil || !Permanent(early[1]) || !Permanent(early[2]) || early[3] != nil {
			t.Errorf("lmtp=%v: AddRcpt gave %v", lmtp, early)
		}
		if err := d.Body(strings.NewReader("Subject: t\n\nx\n")); err != nil {
			t.Fatal(err)
		}
		res, err := d.Commit()
		if err != nil || res[0] != nil || !Permanent(res[1]) || !Permanent(res[2]) || res[3] != nil {
			t.Errorf("lmtp=%v: outcomes %v, %v", lmtp, res, err)
		}
		s.Close()
		cmds := sv.commands()
		want := []string{"MAIL FROM:<\"a b\"@x.test> BODY=8BITMIME", "RCPT TO:<\"v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x\"@gw.test>", "RCPT TO:<ok@gw.test>", "DATA"}
		if len(cmds) < 5 || !reflect.DeepEqual(cmds[1:5], want) {
			t.Errorf("lmtp=%v: commands %q, want %q after the greeting", lmtp, cmds, want)
		}
	}
}
