package tests

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// wireReceiver is a go-smtp server on loopback (PIPELINING, 8BITMIME and
// SMTPUTF8 offered) that counts connections, keeps every transaction with
// its MAIL parameters, and records what each read from the socket
// brought, to tell whether commands came pipelined. RCPTs to bad… get 550.
type wireReceiver struct {
	port int

	mu      sync.Mutex
	accepts int
	reads   []string
	txns    []wireTxn
}

type wireTxn struct {
	conn     int
	from     string
	to       []string
	body8bit bool
	utf8     bool
	data     string
}

func startWireReceiver(t *testing.T) *wireReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rv := &wireReceiver{port: l.Addr().(*net.TCPAddr).Port}
	srv := smtp.NewServer(rv)
	srv.Domain = "wire.test"
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = 10 * time.Second
	go srv.Serve(&wireListener{Listener: l, rv: rv})
	t.Cleanup(func() { srv.Close() })
	return rv
}

type wireListener struct {
	net.Listener
	rv *wireReceiver
}

func (l *wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.rv.mu.Lock()
	l.rv.accepts++
	l.rv.mu.Unlock()
	return &wireConn{Conn: c, rv: l.rv}, nil
}

type wireConn struct {
	net.Conn
	rv *wireReceiver
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rv.mu.Lock()
		c.rv.reads = append(c.rv.reads, string(p[:n]))
		c.rv.mu.Unlock()
	}
	return n, err
}

func (rv *wireReceiver) NewSession(*smtp.Conn) (smtp.Session, error) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return &wireSession{rv: rv, conn: rv.accepts}, nil
}

type wireSession struct {
	rv   *wireReceiver
	conn int
	txn  wireTxn
}

func (s *wireSession) Reset()        { s.txn = wireTxn{conn: s.conn} }
func (s *wireSession) Logout() error { return nil }
func (s *wireSession) Mail(from string, o *smtp.MailOptions) error {
	s.txn = wireTxn{conn: s.conn, from: from}
	if o != nil {
		s.txn.body8bit, s.txn.utf8 = o.Body == smtp.Body8BitMIME, o.UTF8
	}
	return nil
}

func (s *wireSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "bad") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.txn.to = append(s.txn.to, to)
	return nil
}

func (s *wireSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.txn.data = string(b)
	s.rv.mu.Lock()
	s.rv.txns = append(s.rv.txns, s.txn)
	s.rv.mu.Unlock()
	return nil
}

func (rv *wireReceiver) snapshot() (accepts int, reads []string, txns []wireTxn) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.accepts, append([]string(nil), rv.reads...), append([]wireTxn(nil), rv.txns...)
}

// TestSendReusesConnections: twelve messages to one relay, one
// connection allowed at a time, go over one SMTP session: each message in
// one transaction for its recipients of two domains (the relay is one
// destination), BODY=8BITMIME always and SMTPUTF8 only for the message
// that needs it; a refused RCPT fails that recipient only. The client
// (go-smtp's) does not pipeline although PIPELINING is offered: each
// command waits for its reply, so no read holds two of them.
func TestSendReusesConnections(t *testing.T) {
	rv := startWireReceiver(t)
	in := newSendInstance(t, map[string]string{
		"smtproutes":      fmt.Sprintf(":[127.0.0.1]:%d", rv.port),
		"concurrencydest": "1",
	})
	const n = 12
	ids := map[string]int{}
	for i := 0; i < n; i++ {
		rcpts := []string{fmt.Sprintf("u%d@a.test", i), fmt.Sprintf("v%d@b.test", i), fmt.Sprintf("bad%d@a.test", i)}
		if i == n-1 {
			rcpts = []string{"jörg@a.test"}
		}
		ids[in.inject(t, "", rcpts, fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))] = i
	}
	in.start(t)
	// Each of the eleven with a refused recipient also makes a double
	// bounce (null sender) to postmaster@gw.test, over the same relay.
	waitFor(t, "every message and the double bounces", 10*time.Second, func() bool {
		_, _, txns := rv.snapshot()
		return len(txns) >= n+(n-1)
	})
	waitFor(t, "the queue to empty", 5*time.Second, func() bool { return len(in.messages(t)) == 0 })
	accepts, reads, txns := rv.snapshot()
	if accepts > 2 {
		t.Errorf("%d connections for %d messages and %d bounces, one at a time: want 1 (2 if it went idle)", accepts, n, n-1)
	}
	seen := map[int]bool{}
	for _, tx := range txns {
		if !tx.body8bit {
			t.Errorf("transaction to %v without BODY=8BITMIME", tx.to)
		}
		if tx.utf8 != (len(tx.to) == 1 && tx.to[0] == "jörg@a.test") {
			t.Errorf("transaction to %v: SMTPUTF8 %v", tx.to, tx.utf8)
		}
		if tx.from != "" {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(tx.data[strings.Index(tx.data, "Subject: ")+9:], "%d", &i); err != nil {
			continue // a double bounce
		}
		if seen[i] {
			t.Errorf("message %d arrived twice", i)
		}
		seen[i] = true
		want := fmt.Sprintf("[u%d@a.test v%d@b.test]", i, i)
		if i == n-1 {
			want = "[jörg@a.test]"
		}
		if got := fmt.Sprint(tx.to); got != want {
			t.Errorf("message %d: one transaction for %s, want %s", i, got, want)
		}
	}
	if len(seen) != n {
		t.Errorf("%d of %d messages arrived", len(seen), n)
	}
	for _, r := range reads {
		if strings.Contains(r, "MAIL FROM:") && strings.Contains(r, "RCPT TO:") {
			t.Errorf("MAIL and RCPT in one read (pipelined): %q", r)
		}
	}
	for id, i := range ids {
		if i == n-1 {
			continue
		}
		if got := len(in.lines("delivery", "qid="+id, "result=failed")); got != 1 {
			t.Errorf("message %d: %d failed recipients, want 1 (bad%d@)", i, got, i)
		}
		if got := len(in.lines("delivery", "qid="+id, "result=delivered")); got != 2 {
			t.Errorf("message %d: %d delivered recipients, want 2", i, got)
		}
	}
}
