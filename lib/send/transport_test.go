package send

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/deliver"
	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
)

// The scheduler's tests with a scripted transport: each server is a
// fakeServer saying what it does at each step, and fakeNet records what
// the scheduler asked of it. lib/deliver's own tests drive real sockets;
// here the subject is what the scheduler makes of each kind of outcome.

// fakeServer is a scripted mail server.
type fakeServer struct {
	dial     error            // the session cannot be had (refused, a 5xx greeting)
	tlsFails bool             // its handshake fails: the session goes on in the clear
	mail     error            // answer to MAIL FROM
	rcpt     map[string]error // answers to RCPT TO by address; absent is 250
	dot      error            // what follows the final dot: a lost connection, a 4xx for all
	atDot    func()           // called once the final dot is out, before the reply
	body     bytes.Buffer     // what it was sent
}

// fakeNet is the transport: the servers by address, and a log of dials,
// transactions and closes.
type fakeNet struct {
	mu       sync.Mutex
	servers  map[string]*fakeServer
	events   []string
	unpooled bool // as QMTP's sessions
}

func (n *fakeNet) event(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, fmt.Sprintf(format, args...))
}

func (n *fakeNet) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.events, "; ")
}

func (n *fakeNet) Dial(ctx context.Context, h route.Host, o DialOptions) (deliver.Session, error) {
	n.event("dial %s", h.Addr)
	srv := n.servers[h.Addr.String()]
	if srv == nil {
		return nil, &deliver.ConnError{Host: h.String(), Err: errors.New("connection refused"),
			Stage: deliver.StageConnect, Enhanced: deliver.StatusNoAnswer}
	}
	if srv.tlsFails {
		o.TLSFailed(&deliver.TLSFailure{Host: h.String(), Stage: "handshake", Reason: "bad certificate"})
	}
	if srv.dial != nil {
		return nil, srv.dial
	}
	return &fakeSession{n: n, srv: srv, host: h}, nil
}

func (n *fakeNet) Pooled() bool { return !n.unpooled }

type fakeSession struct {
	n      *fakeNet
	srv    *fakeServer
	host   route.Host
	broken bool
}

func (s *fakeSession) Start(sender string, size int64, utf8 bool, _ dsn.Mail) (deliver.Delivery, error) {
	s.n.event("MAIL %s %s", s.host.Addr, sender)
	if s.srv.mail != nil {
		return nil, s.srv.mail
	}
	return &fakeDelivery{s: s}, nil
}
func (s *fakeSession) Reusable() bool  { return !s.broken }
func (s *fakeSession) TLS() bool       { return false }
func (s *fakeSession) OffersDSN() bool { return false }
func (s *fakeSession) Close() error    { s.n.event("close %s", s.host.Addr); return nil }
func (s *fakeSession) Kill()           { s.n.event("kill %s", s.host.Addr) }

type fakeDelivery struct {
	s        *fakeSession
	res      []error
	dataSent bool
}

func (d *fakeDelivery) AddRcpt(to string, _ dsn.Rcpt) error {
	err := d.s.srv.rcpt[to]
	d.res = append(d.res, err)
	return err
}

func (d *fakeDelivery) Body(r io.Reader) error {
	for _, err := range d.res {
		if err == nil {
			d.dataSent = true
			_, err := io.Copy(&d.s.srv.body, r)
			return err
		}
	}
	return nil
}

func (d *fakeDelivery) DataSent() bool { return d.dataSent }

func (d *fakeDelivery) Commit() ([]error, error) {
	if d.dataSent && d.s.srv.atDot != nil {
		d.s.srv.atDot()
	}
	if d.dataSent && d.s.srv.dot != nil {
		var rp *deliver.Reply
		if !errors.As(d.s.srv.dot, &rp) {
			d.s.broken = true
		}
		return nil, d.s.srv.dot
	}
	return d.res, nil
}

func (d *fakeDelivery) Abort() {}

// fakeResolver gives relay.test the addresses of the two servers.
type fakeResolver struct{}

func (fakeResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == "relay.test" && network != "ip6" {
		return []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// relayDest is the destination of mail for dest.test.
var relayDest = route.Route{Proto: route.SMTP, Relay: "relay.test"}.Destination("dest.test")

// fakeRun is a Sender whose mail for dest.test goes to relay.test, that
// is to the servers 192.0.2.1 then 192.0.2.2 of net.
type fakeRun struct {
	t     *testing.T
	s     *Sender
	id    queue.ID
	clock *time.Time
	net   *fakeNet
	log   *bytes.Buffer
}

func newFakeRun(t *testing.T, servers map[string]*fakeServer, rcpts ...string) *fakeRun {
	t.Helper()
	s, id, clock := newTestSender(t, []string{"dest.test:relay.test"},
		schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"sender@src.test", rcpts...)
	n := &fakeNet{servers: servers}
	var buf bytes.Buffer
	s.log, s.res = logline.New(&syncWriter{w: &buf}), fakeResolver{}
	s.transports = map[route.Proto]Transport{route.SMTP: n}
	s.cfg.PerDest, s.cfg.Overall = 5, 10 // sessions may wait in the pool
	return &fakeRun{t: t, s: s, id: id, clock: clock, net: n, log: &buf}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// attempt plans message id and runs its jobs, and the finish (bounce and
// removal) they lead to, to their end.
func (f *fakeRun) attempt(id queue.ID) {
	f.t.Helper()
	f.s.plan(id, *f.clock)
	for len(f.s.flight) > 0 {
		select {
		case j := <-f.s.done:
			f.s.jobDone(j)
		case <-time.After(10 * time.Second):
			f.t.Fatal("a job did not end")
		}
	}
}

// recipients returns each recipient's state and outcome.
func (f *fakeRun) recipients(id queue.ID) []queue.Recipient {
	m, err := f.s.r.Message(id)
	if err != nil {
		return nil
	}
	return m.Recipients
}

// bounce returns the text of the DSN gw-send queued, "" when none.
func (f *fakeRun) bounce() string {
	f.t.Helper()
	msgs, err := f.s.r.Refresh()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Sender == "" && m.ID != f.id {
			body, err := f.s.r.Body(m.ID)
			if err != nil {
				f.t.Fatal(err)
			}
			b, _ := io.ReadAll(body)
			body.Close()
			return string(b)
		}
	}
	return ""
}

func rcptReply(code int, enh, text string) *deliver.Reply {
	return &deliver.Reply{Code: code, Enhanced: enh, Text: enh + " " + text, Host: "relay.test[192.0.2.1]:25",
		Stage: deliver.StageRcpt}
}

// TestFakeDelivered: one server takes the message; nothing is bounced,
// the message is gone, the session waits in the pool.
func TestFakeDelivered(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": {}}, "u@dest.test")
	f.attempt(f.id)
	if _, err := f.s.r.Message(f.id); err == nil {
		t.Errorf("the delivered message is still queued: %+v", f.recipients(f.id))
	}
	if got := f.net.log(); got != "dial 192.0.2.1; MAIL 192.0.2.1 sender@src.test" {
		t.Errorf("dialogue %q", got)
	}
	if !strings.Contains(f.net.servers["192.0.2.1"].body.String(), "Subject: test") {
		t.Error("the server got no body")
	}
	if b := f.bounce(); b != "" {
		t.Errorf("a bounce for a delivered message:\n%s", b)
	}
}

// TestFakeMixedOutcomes: on one connection, one recipient taken, one
// deferred (450), one refused (550): each gets its own outcome, kept with
// the reply's code, status and stage; the bounce names only the refused
// one, with the server's reply as its smtp Diagnostic-Code.
func TestFakeMixedOutcomes(t *testing.T) {
	srv := &fakeServer{rcpt: map[string]error{
		"later@dest.test": rcptReply(450, "4.2.1", "mailbox busy"),
		"gone@dest.test":  rcptReply(550, "5.1.1", "no such user"),
	}}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": srv}, "ok@dest.test", "later@dest.test", "gone@dest.test")
	f.attempt(f.id)
	rs := f.recipients(f.id)
	if len(rs) != 3 || rs[0].State != queue.Delivered || rs[1].State != queue.Pending || rs[2].State != queue.Failed {
		t.Fatalf("recipients %+v: want delivered, pending, failed", rs)
	}
	if o := rs[1].Outcome; o.Source != queue.FromReply || o.Code != 450 || o.Status != "4.2.1" || o.Stage != "RCPT TO" ||
		o.Host != "relay.test" || o.Addr != "192.0.2.1:25" || rs[1].Attempts != 1 || !rs[1].NextTry.After(*f.clock) {
		t.Errorf("deferred recipient %+v", rs[1])
	}
	if o := rs[2].Outcome; o.Code != 550 || o.Status != "5.1.1" {
		t.Errorf("refused recipient %+v", rs[2])
	}
	if strings.Count(f.net.log(), "dial") != 1 {
		t.Errorf("dialogue %q: want one connection for all three", f.net.log())
	}
}

// TestFakeBounceFields: a refused recipient's bounce (once the message is
// done) carries the reply as its smtp Diagnostic-Code and the server's
// name as its Remote-MTA.
func TestFakeBounceFields(t *testing.T) {
	srv := &fakeServer{rcpt: map[string]error{"gone@dest.test": rcptReply(550, "5.1.1", "no such user")}}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": srv}, "ok@dest.test", "gone@dest.test")
	f.attempt(f.id)
	b := f.bounce()
	for _, want := range []string{"Final-Recipient: rfc822; gone@dest.test\nAction: failed\nStatus: 5.1.1\n" +
		"Remote-MTA: dns; relay.test\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "ok@dest.test\nAction") {
		t.Errorf("the delivered recipient is in the bounce:\n%s", b)
	}
}

// TestFakeConnectionRefused: every host refuses: both are tried, the
// recipient is deferred 4.4.1 with no reply code, and the destination is
// backed off.
func TestFakeConnectionRefused(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{}, "u@dest.test")
	f.attempt(f.id)
	if got := f.net.log(); got != "dial 192.0.2.1; dial 192.0.2.2" {
		t.Errorf("dialogue %q: want both hosts tried", got)
	}
	rc := f.recipients(f.id)[0]
	if o := rc.Outcome; rc.State != queue.Pending || o.Source != queue.FromConn || o.Status != "4.4.1" || o.Code != 0 ||
		o.Addr != "192.0.2.2:25" || o.Stage != "connect" {
		t.Errorf("recipient %+v: want deferred 4.4.1, refused by the last host", rc)
	}
	if _, off := f.s.dests.BackedOff(relayDest, *f.clock); !off {
		t.Errorf("destination not backed off after every host refused: %+v", f.s.dests.Get(relayDest))
	}
}

// TestFakeGreeting5xx: a 554 greeting refuses the host, not the message:
// the next host is tried and takes it.
func TestFakeGreeting5xx(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{
		"192.0.2.1": {dial: &deliver.Reply{Code: 554, Text: "no service", Host: "relay.test[192.0.2.1]:25", Stage: deliver.StageGreeting}},
		"192.0.2.2": {},
	}, "u@dest.test")
	f.attempt(f.id)
	if got := f.net.log(); got != "dial 192.0.2.1; dial 192.0.2.2; MAIL 192.0.2.2 sender@src.test" {
		t.Errorf("dialogue %q", got)
	}
	if _, err := f.s.r.Message(f.id); err == nil {
		t.Errorf("not delivered by the second host: %+v", f.recipients(f.id))
	}
}

// TestFakeGreeting5xxEverywhere: every host greets 554: deferred, 4.3.2,
// the greeting kept as the outcome.
func TestFakeGreeting5xxEverywhere(t *testing.T) {
	greet := func(ip string) *fakeServer {
		return &fakeServer{dial: &deliver.Reply{Code: 554, Text: "no service", Host: "relay.test[" + ip + "]:25", Stage: deliver.StageGreeting}}
	}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": greet("192.0.2.1"), "192.0.2.2": greet("192.0.2.2")}, "u@dest.test")
	f.attempt(f.id)
	rc := f.recipients(f.id)[0]
	if o := rc.Outcome; rc.State != queue.Pending || o.Code != 554 || o.Status != "4.3.2" || o.Stage != "greeting" {
		t.Errorf("recipient %+v: want deferred 4.3.2 with the greeting", rc)
	}
}

// TestFakeLostAfterDot: the connection is lost after the final dot: the
// recipient is deferred, its outcome says the dot was sent, and the log
// has a possible_duplicate line; the next host is not tried at once.
func TestFakeLostAfterDot(t *testing.T) {
	lost := &deliver.ConnError{Host: "relay.test[192.0.2.1]:25", Err: io.EOF, Stage: deliver.StageDot}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": {dot: lost}, "192.0.2.2": {}}, "u@dest.test")
	f.attempt(f.id)
	rc := f.recipients(f.id)[0]
	if o := rc.Outcome; rc.State != queue.Pending || !o.DotSent || o.Source != queue.FromConn || o.Stage != "end of data" ||
		!strings.Contains(o.Note, "possible duplicate") {
		t.Errorf("recipient %+v: want deferred, dot sent, possible duplicate", rc)
	}
	if strings.Contains(f.net.log(), "192.0.2.2") {
		t.Errorf("dialogue %q: the second host was tried after the dot", f.net.log())
	}
	if !strings.Contains(f.log.String(), "possible_duplicate") || !strings.Contains(f.log.String(), "dot=yes") {
		t.Errorf("log lacks the possible duplicate:\n%s", f.log)
	}
}

// TestFakeLostAfterDotMixedRcpt: of three recipients one is taken at
// RCPT, one deferred (450), one refused (550); the connection is lost
// after the final dot. The journal's dot records, read by another reader
// while the reply is awaited (what a gw-send started after a crash then
// finds), name only the recipient RCPT took; after the loss only it is a
// possible duplicate, and the others keep their RCPT answers: 450
// deferred, 550 failed.
func TestFakeLostAfterDotMixedRcpt(t *testing.T) {
	lost := &deliver.ConnError{Host: "relay.test[192.0.2.1]:25", Err: io.EOF, Stage: deliver.StageDot}
	srv := &fakeServer{dot: lost, rcpt: map[string]error{
		"later@dest.test": rcptReply(450, "4.2.1", "mailbox busy"),
		"gone@dest.test":  rcptReply(550, "5.1.1", "no such user"),
	}}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": srv}, "ok@dest.test", "later@dest.test", "gone@dest.test")
	var dots []bool
	srv.atDot = func() {
		q, err := queue.OpenReadOnly(f.s.opt.QueueDir)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := q.Snapshot()
		if err != nil || len(snap.Messages) != 1 {
			t.Fatalf("snapshot at the dot: %v, %d messages", err, len(snap.Messages))
		}
		for _, rc := range snap.Messages[0].Recipients {
			dots = append(dots, rc.DotSent)
		}
	}
	f.attempt(f.id)
	if fmt.Sprint(dots) != "[true false false]" {
		t.Errorf("dot records at the dot for ok, later, gone: %v, want [true false false]", dots)
	}
	rs := f.recipients(f.id)
	if len(rs) != 3 {
		t.Fatalf("recipients %+v", rs)
	}
	if o := rs[0].Outcome; rs[0].State != queue.Pending || !o.DotSent || !strings.Contains(o.Note, "possible duplicate") {
		t.Errorf("accepted recipient %+v: want deferred as a possible duplicate", rs[0])
	}
	if o := rs[1].Outcome; rs[1].State != queue.Pending || o.DotSent || o.Code != 450 || o.Stage != "RCPT TO" || o.Note != "" {
		t.Errorf("recipient deferred at RCPT %+v: want its 450, no dot, no duplicate", rs[1])
	}
	if o := rs[2].Outcome; rs[2].State != queue.Failed || o.DotSent || o.Code != 550 || o.Status != "5.1.1" {
		t.Errorf("recipient refused at RCPT %+v: want failed with its 550", rs[2])
	}
	if n := strings.Count(f.log.String(), "possible_duplicate"); n != 1 {
		t.Errorf("%d possible_duplicate lines, want 1 (ok@dest.test):\n%s", n, f.log)
	}
}

// TestFakeTLSFallback: a failed handshake is logged with host, stage and
// reason, and the message goes on in the clear.
func TestFakeTLSFallback(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": {tlsFails: true}}, "u@dest.test")
	f.attempt(f.id)
	if _, err := f.s.r.Message(f.id); err == nil {
		t.Error("not delivered in the clear")
	}
	l := f.log.String()
	for _, want := range []string{"tls_failed", "host=relay.test[192.0.2.1]:25", "stage=handshake", "bad certificate", "tls=no"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

// TestFakeMailRefused: a 5xx to MAIL FROM fails every recipient with the
// reply; the next host is not asked.
func TestFakeMailRefused(t *testing.T) {
	refused := &deliver.Reply{Code: 553, Enhanced: "5.7.1", Text: "5.7.1 sender refused", Host: "relay.test[192.0.2.1]:25",
		Stage: deliver.StageMail}
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": {mail: refused}, "192.0.2.2": {}}, "u@dest.test", "v@dest.test")
	f.attempt(f.id)
	if strings.Contains(f.net.log(), "192.0.2.2") {
		t.Errorf("dialogue %q: a refusal of the message went to the next host", f.net.log())
	}
	b := f.bounce()
	if strings.Count(b, "Diagnostic-Code: smtp; 553 5.7.1 sender refused\n") != 2 {
		t.Errorf("bounce:\n%s", b)
	}
}

// TestFakeConnectionReuse: a second message to the same destination goes
// over the session the first left in the pool: one dial, two MAILs.
func TestFakeConnectionReuse(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.1": {}}, "u@dest.test")
	f.attempt(f.id)
	w, err := f.s.q.NewMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: second\n\nbody\n")
	if err := w.Commit(envelope.Envelope{Sender: "other@src.test", Recipients: []string{"v@dest.test"}}); err != nil {
		t.Fatal(err)
	}
	msgs, err := f.s.r.Refresh()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d new messages, %v", len(msgs), err)
	}
	f.attempt(msgs[0].ID)
	if got := f.net.log(); got != "dial 192.0.2.1; MAIL 192.0.2.1 sender@src.test; MAIL 192.0.2.1 other@src.test" {
		t.Errorf("dialogue %q: want one dial for both messages", got)
	}
}

// TestFakeQMTPRoute: a qmtproutes destination goes through the QMTP
// transport in the same loop; its sessions are not pooled, so each is
// closed after its message, and a refused first host falls to the next.
func TestFakeQMTPRoute(t *testing.T) {
	f := newFakeRun(t, map[string]*fakeServer{"192.0.2.2": {}}, "u@dest.test")
	tbl, err := route.Parse(route.QMTP, []string{"dest.test:relay.test"})
	if err != nil {
		t.Fatal(err)
	}
	f.s.cfg.Routes = route.Routes{tbl}
	q := &fakeNet{servers: f.net.servers, unpooled: true}
	f.net = q
	f.s.transports = map[route.Proto]Transport{route.SMTP: &fakeNet{}, route.QMTP: q}
	f.attempt(f.id)
	if got := q.log(); got != "dial 192.0.2.1; dial 192.0.2.2; MAIL 192.0.2.2 sender@src.test; close 192.0.2.2" {
		t.Errorf("dialogue %q", got)
	}
	if _, err := f.s.r.Message(f.id); err == nil {
		t.Errorf("not delivered over QMTP: %+v", f.recipients(f.id))
	}
}
