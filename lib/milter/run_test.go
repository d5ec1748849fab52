package milter

import (
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// filter is a milter served by go-milter's server side over a real unix
// socket: it records what the client told it and, at the end of the
// message, does what the test asks.
type filter struct {
	gomilter.NoOpMilter
	mu      *sync.Mutex
	seen    *seen
	atEnd   func(m gomilter.Modifier) (*gomilter.Response, error)
	atRcpt  func(rcpt string) *gomilter.Response
	atMail  *gomilter.Response
	headers []string
	body    []byte
}

type seen struct {
	mu       *sync.Mutex // the filter's
	connects int
	aborts   int
	macros   map[string]string
	helo     string
	from     string
	rcpts    []string
	headers  []string
	body     string
}

func (f *filter) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range []string{"j", "{daemon_name}", "{client_addr}", "{client_name}", "{if_addr}"} {
		f.seen.macros[k] = m.Get(k)
	}
	f.seen.macros["connect"] = host + " " + family + " " + addr
	f.seen.connects++
	return gomilter.RespContinue, nil
}

func (f *filter) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.helo = name
	return gomilter.RespContinue, nil
}

func (f *filter) MailFrom(from, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.from = from
	f.seen.macros["{mail_addr}"] = m.Get("{mail_addr}")
	f.seen.macros["{auth_authen}"] = m.Get("{auth_authen}")
	f.seen.macros["i"] = m.Get("i")
	if f.atMail != nil {
		return f.atMail, nil
	}
	return gomilter.RespContinue, nil
}

func (f *filter) RcptTo(rcpt, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.rcpts = append(f.seen.rcpts, rcpt+" "+m.Get("{rcpt_addr}"))
	if f.atRcpt != nil {
		if r := f.atRcpt(rcpt); r != nil {
			return r, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (f *filter) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.headers = append(f.seen.headers, name+":"+value)
	return gomilter.RespContinue, nil
}

func (f *filter) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.body += string(chunk)
	return gomilter.RespContinue, nil
}

func (f *filter) Abort(m gomilter.Modifier) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.aborts++
	return nil
}

func (f *filter) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	if f.atEnd == nil {
		return gomilter.RespAccept, nil
	}
	return f.atEnd(m)
}

// serve starts the filter on a unix socket and returns its control line.
func serve(t *testing.T, f filter) (Milter, *seen) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "f.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &seen{mu: &sync.Mutex{}, macros: map[string]string{}}
	f.mu, f.seen = s.mu, s
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { c := f; return &c }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithMacroRequest(gomilter.StageConnect, []string{"j", "{daemon_name}", "{client_addr}", "{client_name}", "{if_addr}"}),
		gomilter.WithMacroRequest(gomilter.StageMail, []string{"{mail_addr}", "{auth_authen}", "i"}),
		gomilter.WithMacroRequest(gomilter.StageRcpt, []string{"{rcpt_addr}"}),
	)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return Milter{Name: "f", Network: "unix", Address: sock, Timeout: 5 * time.Second}, s
}

var (
	memoClient = Client{
		Macros: map[string]string{"j": "mx.gw.test", "{daemon_name}": "gw-smtpd", "{client_addr}": "127.0.0.9",
			"{client_name}": "client.test", "{if_addr}": "127.0.0.1"},
		Addr: "127.0.0.9", Port: 4000, Name: "client.test", Helo: "client.test",
	}
	memoMail = map[string]string{"{auth_authen}": "ops", "i": "sid.1"}
	memo     = Transaction{
		Macros: map[string]string{"i": "sid.1"},
		Sender: "ops@gw.test", Rcpts: []string{"a@example.org", "b@example.org"},
		Message: []byte("Received: from client.test\n\tby mx.gw.test\nSubject: numbers\nX-Drop: me\nTo: a@example.org\n\nline one\nline two\n"),
	}
)

// Run is one session of one message, as gw-smtpd drives it: MAIL, each
// RCPT (one a milter refuses is left out of the message's envelope), the
// message's end.
func Run(list []Milter, tx Transaction) Outcome {
	s := Open(list, memoClient)
	defer s.Close()
	if st := s.Mail(tx.Sender, memoMail); st.Reply != nil {
		return Outcome{Reply: st.Reply, By: st.By, Failed: st.Failed}
	}
	var kept []string
	for _, r := range tx.Rcpts {
		if st := s.Rcpt(r); st.Reply == nil {
			kept = append(kept, r)
		}
	}
	tx.Rcpts = kept
	return s.End(tx)
}

// TestRunTellsAndModifies: the milter hears the transaction as Postfix
// tells it (macros, angle-bracketed paths, header values, CRLF body),
// and every modification it asks for is carried out in its order.
func TestRunTellsAndModifies(t *testing.T) {
	m, s := serve(t, filter{atEnd: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.AddHeader("X-Added", "yes")
		m.ChangeHeader(1, "Subject", "[ext] numbers")
		m.ChangeHeader(1, "X-Drop", "")
		m.InsertHeader(0, "X-First", "top")
		m.ChangeFrom("<bounces@gw.test>", "")
		m.AddRecipient("<c@example.org>", "")
		m.DeleteRecipient("<a@example.org>")
		m.ReplaceBody(strings.NewReader("new body\r\n"))
		m.Quarantine("looks odd")
		return gomilter.RespAccept, nil
	}})
	out := Run([]Milter{m}, memo)
	if out.Reply != nil || out.Discard || len(out.Failed) > 0 {
		t.Fatalf("outcome: %+v", out)
	}
	want := seen{
		mu: s.mu,
		macros: map[string]string{"j": "mx.gw.test", "{daemon_name}": "gw-smtpd", "{client_addr}": "127.0.0.9",
			"{client_name}": "client.test", "{if_addr}": "127.0.0.1", "connect": "client.test tcp4 127.0.0.9",
			"{mail_addr}": "ops@gw.test", "{auth_authen}": "ops", "i": "sid.1"},
		connects: 1,
		helo:     "client.test",
		// the server takes one pair of angle brackets off: the wire had one
		from:    "ops@gw.test",
		rcpts:   []string{"a@example.org a@example.org", "b@example.org b@example.org"},
		headers: []string{"Received:from client.test\n\tby mx.gw.test", "Subject:numbers", "X-Drop:me", "To:a@example.org"},
		body:    "line one\r\nline two\r\n",
	}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("the milter heard\n%#v\nwant\n%#v", *s, want)
	}
	msg := "X-First: top\nReceived: from client.test\n\tby mx.gw.test\nSubject: [ext] numbers\nTo: a@example.org\nX-Added: yes\n\nnew body\n"
	if string(out.Message) != msg {
		t.Errorf("message:\n%s\nwant\n%s", out.Message, msg)
	}
	if out.Sender != "bounces@gw.test" || !reflect.DeepEqual(out.Rcpts, []string{"b@example.org", "c@example.org"}) {
		t.Errorf("envelope: %q %q", out.Sender, out.Rcpts)
	}
	if !reflect.DeepEqual(out.Quarantine, []string{"f: looks odd"}) {
		t.Errorf("quarantine: %q", out.Quarantine)
	}
}

// TestRunRefusals: a milter's own reply at the end refuses the message
// with its code and text; a discard drops it.
func TestRunRefusals(t *testing.T) {
	reject, _ := gomilter.RejectWithCodeAndReason(554, "5.7.0 not from here\r\nsecond line")
	m, _ := serve(t, filter{atEnd: func(gomilter.Modifier) (*gomilter.Response, error) { return reject, nil }})
	out := Run([]Milter{m}, memo)
	if out.Reply == nil || *out.Reply != (Reply{554, "5.7.0", "not from here second line"}) || out.By != "f" {
		t.Errorf("reject with code: %+v %+v", out, out.Reply)
	}
	m, _ = serve(t, filter{atEnd: func(gomilter.Modifier) (*gomilter.Response, error) { return gomilter.RespDiscard, nil }})
	if out = Run([]Milter{m}, memo); !out.Discard || out.Reply != nil {
		t.Errorf("discard: %+v", out)
	}
	m, _ = serve(t, filter{atEnd: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.DeleteRecipient("<a@example.org>")
		m.DeleteRecipient("<B@example.org>")
		return gomilter.RespAccept, nil
	}})
	if out = Run([]Milter{m}, memo); !out.Discard {
		t.Errorf("every recipient deleted: %+v", out)
	}
}

// TestRunDistrustsTheMilter: what a milter asks for is checked as if a
// client sent it; a bad request is the milter's failure and gets its
// default action, and the message goes on unchanged under accept.
func TestRunDistrustsTheMilter(t *testing.T) {
	for name, end := range map[string]func(m gomilter.Modifier){
		"field ends the header": func(m gomilter.Modifier) { m.AddHeader("X-A", "v\n\nbody") },
		"field starts a field":  func(m gomilter.Modifier) { m.AddHeader("X-A", "v\r\nBcc: x@y") },
		"recipient":             func(m gomilter.Modifier) { m.AddRecipient("<no address>", "") },
		"sender":                func(m gomilter.Modifier) { m.ChangeFrom("<a@b@c>", "") },
	} {
		m, _ := serve(t, filter{atEnd: func(m gomilter.Modifier) (*gomilter.Response, error) {
			end(m)
			return gomilter.RespAccept, nil
		}})
		out := Run([]Milter{m}, memo)
		if out.Reply != replyTempfail || len(out.Failed) != 1 {
			t.Errorf("%s: %+v", name, out)
		}
		m.Default = FailAccept
		out = Run([]Milter{m}, memo)
		if out.Reply != nil || string(out.Message) != string(memo.Message) || !reflect.DeepEqual(out.Rcpts, memo.Rcpts) {
			t.Errorf("%s under default=accept: %+v", name, out)
		}
	}
}

// TestRunInOrder: the second milter sees the first one's changes.
func TestRunInOrder(t *testing.T) {
	first, _ := serve(t, filter{atEnd: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.AddHeader("X-First", "1")
		return gomilter.RespAccept, nil
	}})
	second, s := serve(t, filter{})
	second.Name = "g"
	Run([]Milter{first, second}, memo)
	if last := s.headers[len(s.headers)-1]; last != "X-First:1" {
		t.Errorf("second milter's last field: %q", last)
	}
}

// TestRcptRefusalIsThatRecipients: a milter that refuses one recipient
// at RCPT refuses that one alone: the others go on, the message's end
// is told only of them, and its delrcpt and addrcpt change only them.
func TestRcptRefusalIsThatRecipients(t *testing.T) {
	refuse, _ := gomilter.RejectWithCodeAndReason(550, "5.1.1 no mailbox here")
	m, seen := serve(t, filter{
		atRcpt: func(rcpt string) *gomilter.Response {
			if rcpt == "b@example.org" {
				return refuse
			}
			return nil
		},
		atEnd: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.DeleteRecipient("<c@example.org>")
			m.AddRecipient("<d@example.org>", "")
			return gomilter.RespAccept, nil
		},
	})
	s := Open([]Milter{m}, memoClient)
	defer s.Close()
	if st := s.Mail("ops@gw.test", memoMail); st.Reply != nil {
		t.Fatalf("MAIL: %+v", st.Reply)
	}
	var kept []string
	for _, r := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		st := s.Rcpt(r)
		switch {
		case r == "b@example.org" && (st.Reply == nil || *st.Reply != Reply{550, "5.1.1", "no mailbox here"} || st.By != "f"):
			t.Errorf("RCPT %s: %+v, want the milter's 550", r, st)
		case r != "b@example.org" && st.Reply != nil:
			t.Errorf("RCPT %s refused: %+v", r, st.Reply)
		case st.Reply == nil:
			kept = append(kept, r)
		}
	}
	tx := memo
	tx.Rcpts = kept
	out := s.End(tx)
	if out.Reply != nil || out.Discard || !reflect.DeepEqual(out.Rcpts, []string{"a@example.org", "d@example.org"}) {
		t.Errorf("the message's end: %+v", out)
	}
	if want := []string{"a@example.org a@example.org", "b@example.org b@example.org", "c@example.org c@example.org"}; !reflect.DeepEqual(seen.rcpts, want) {
		t.Errorf("the milter heard RCPT %q, want %q", seen.rcpts, want)
	}
}

// TestSessionKeepsOneConnection: a session's transactions share the
// milter's connection; each ends with an abort, as behind Postfix,
// whether the client abandoned it or the message reached its end.
func TestSessionKeepsOneConnection(t *testing.T) {
	m, heard := serve(t, filter{})
	s := Open([]Milter{m}, memoClient)
	defer s.Close()
	s.Mail("ops@gw.test", memoMail)
	s.Rcpt("a@example.org")
	s.Reset() // RSET
	for i := 0; i < 2; i++ {
		s.Mail("ops@gw.test", memoMail)
		s.Rcpt("a@example.org")
		if out := s.End(memo); out.Reply != nil || len(out.Failed) > 0 {
			t.Fatalf("message %d: %+v", i, out)
		}
		s.Reset() // after each message, as the core does
	}
	// the server counts the abort when it reads it
	waitSeen(t, heard, func(s *seen) bool { return s.aborts >= 3 })
	heard.mu.Lock()
	defer heard.mu.Unlock()
	if heard.connects != 1 || heard.aborts != 3 {
		t.Errorf("%d connections, %d aborts; want 1 and 3", heard.connects, heard.aborts)
	}
}

// TestFailureHoldsForTheSession: a milter that cannot be reached gets
// its default action at MAIL, and keeps it for the session, as Postfix's
// milter_default_action: tempfail refuses each command, accept skips it
// without another try.
func TestFailureHoldsForTheSession(t *testing.T) {
	gone := Milter{Name: "gone", Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock"), Timeout: time.Second}
	s := Open([]Milter{gone}, memoClient)
	for i := 0; i < 2; i++ {
		if st := s.Mail("ops@gw.test", memoMail); st.Reply != replyTempfail || st.By != "gone" {
			t.Errorf("MAIL %d, milter down, default tempfail: %+v", i, st)
		}
	}
	gone.Default = FailAccept
	s = Open([]Milter{gone}, memoClient)
	if st := s.Mail("ops@gw.test", memoMail); st.Reply != nil || len(st.Failed) != 1 {
		t.Errorf("MAIL, milter down, default accept: %+v", st)
	}
	if st := s.Mail("ops@gw.test", memoMail); st.Reply != nil || len(st.Failed) != 0 {
		t.Errorf("second MAIL: the skipped milter was tried again: %+v", st)
	}
	if out := s.End(memo); out.Reply != nil || string(out.Message) != string(memo.Message) {
		t.Errorf("the message past a skipped milter: %+v", out)
	}
}

func waitSeen(t *testing.T, s *seen, ok func(*seen) bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		done := ok(s)
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// TestMailRefusalAndRcptDiscard: a refusal at MAIL is MAIL's, and the
// milters after the refusing one are not told; a discard at RCPT takes
// the recipient and drops the whole message at its end, as Postfix does.
func TestMailRefusalAndRcptDiscard(t *testing.T) {
	refuse, _ := gomilter.RejectWithCodeAndReason(550, "5.7.1 not this sender")
	first, _ := serve(t, filter{atMail: refuse})
	second, heard := serve(t, filter{})
	second.Name = "g"
	s := Open([]Milter{first, second}, memoClient)
	if st := s.Mail("ops@gw.test", memoMail); st.Reply == nil || *st.Reply != (Reply{550, "5.7.1", "not this sender"}) || st.By != "f" {
		t.Errorf("MAIL: %+v", st)
	}
	s.Close()
	heard.mu.Lock()
	if heard.from != "" {
		t.Errorf("the second milter was told MAIL %q after the first refused it", heard.from)
	}
	heard.mu.Unlock()

	m, _ := serve(t, filter{atRcpt: func(string) *gomilter.Response { return gomilter.RespDiscard }})
	s = Open([]Milter{m}, memoClient)
	defer s.Close()
	s.Mail("ops@gw.test", memoMail)
	if st := s.Rcpt("a@example.org"); st.Reply != nil {
		t.Errorf("RCPT under a discard: %+v", st)
	}
	if out := s.End(memo); !out.Discard || out.By != "f" || out.Reply != nil {
		t.Errorf("the message's end after a discard at RCPT: %+v", out)
	}
}
