package smtpserver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"gw/lib/logline"
	"gw/lib/mailbox"
	"gw/lib/tcpserver"
)

// testPolicy accepts every sender and every recipient but those whose
// path starts with "bad", and keeps the messages it is given.
type testPolicy struct {
	mu      sync.Mutex
	msgs    []string
	refused []string // DataEnd's m.Reason for refused messages
	buf     *bytes.Buffer
}

func (p *testPolicy) Connect(*Session) *Reply { return nil }
func (p *testPolicy) Helo(*Session) *Reply    { return nil }
func (p *testPolicy) Reset(*Session)          {}
func (p *testPolicy) Mail(s *Session, m *Mail) *Reply {
	a, err := mailbox.ParseRFC5321(m.Path)
	if err != nil {
		return R(553, "5.1.7", "bad sender")
	}
	m.Addr = a
	return nil
}
func (p *testPolicy) Rcpt(s *Session, r *Rcpt) *Reply {
	if strings.HasPrefix(r.Path, "bad") {
		return R(550, "5.1.1", "no such user here")
	}
	r.Stored = r.Path
	return nil
}
func (p *testPolicy) Data(*Session) (io.Writer, *Reply) {
	p.buf = &bytes.Buffer{}
	return p.buf, nil
}
func (p *testPolicy) DataEnd(s *Session, m *Message) *Reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.Refused != nil {
		p.refused = append(p.refused, m.Reason)
		return nil
	}
	p.msgs = append(p.msgs, p.buf.String())
	return nil
}
func (p *testPolicy) Auth(*Session, string) (sasl.Server, *Reply) { return nil, ErrAuthMech }

func testConfig() Config {
	return Config{Hostname: "gw.test", Timeout: 2 * time.Second, MaxJunk: DefaultMaxJunk, MaxErrors: 10, MaxRcpt: 5, MaxMessage: 1 << 20, MinDataRate: DefaultMinDataRate}
}

// pair is a loopback TCP connection: unlike net.Pipe, the client can
// half-close, and the server sees real deadlines.
func pair(t testing.TB) (net.Conn, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client.(*net.TCPConn)
}

// dialogue runs a session with cfg, sends in all at once (pipelined),
// and returns every final reply line and why the session ended.
func dialogue(t testing.TB, cfg Config, p Policy, in string) ([]string, string) {
	t.Helper()
	server, client := pair(t)
	defer client.Close()
	reason := make(chan string, 1)
	go func() { reason <- Serve(server, cfg, tcpserver.Client{}, "test", p) }()
	go func() { io.WriteString(client, in); client.CloseWrite() }()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var replies []string
	br := bufio.NewReader(client)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		replies = append(replies, strings.TrimRight(l, "\r\n"))
	}
	return replies, <-reason
}

func codes(r []string) string {
	var c []string
	for _, l := range r {
		c = append(c, l[:min(3, len(l))])
	}
	return strings.Join(c, ",")
}

func TestDialogue(t *testing.T) {
	cases := []struct {
		name, in, want, reason string
	}{
		{"a message", "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@c.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
			"220,250,250,250,354,250,221", "quit"},
		{"sequence", "MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<u@c.example>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\nQUIT\r\n",
			"220,503,250,503,503,250,503,503,221", "quit"},
		{"unknown verb and params", "EHLO c\r\nFOO\r\nMAIL FROM:<> BODY=BINARYMIME\r\nMAIL FROM:<> X=1\r\nMAIL FROM:<> SIZE=x\r\nMAIL FROM:<> SIZE=2000000\r\nMAIL FROM:<> SMTPUTF8 BODY=8BITMIME\r\nQUIT\r\n",
			"220,250,502,555,555,501,552,250,221", "quit"},
		{"CR or NUL in a command", "EHLO a\rb\r\nNOOP \x00\r\nQUIT\r\n", "220,500,500,221", "quit"},
		{"bare LF in DATA ends the session", "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@c.example>\r\nDATA\r\na\n.\nQUIT\r\n", "220,250,250,250,354,451", "bare_line_end"},
		{"recipients", "EHLO c\r\nMAIL FROM:<>\r\n" + strings.Repeat("RCPT TO:<u@c.example>\r\n", 6) + "QUIT\r\n", "220,250,250,250,250,250,250,250,452,221", "quit"},
		{"policy refusals are no errors", "EHLO c\r\nMAIL FROM:<>\r\n" + strings.Repeat("RCPT TO:<bad@c.example>\r\n", 12) + "QUIT\r\n",
			"220,250,250" + strings.Repeat(",550", 12) + ",221", "quit"},
		{"errors", strings.Repeat("FOO\r\n", 11), "220" + strings.Repeat(",502", 9) + ",421", "too_many_errors"},
		{"BDAT out of sequence, its bytes dropped", "EHLO c\r\nBDAT 12\r\nQUIT\r\nNOOP\r\nRSET\r\nQUIT\r\n", "220,250,503,250,221", "quit"},
		{"BDAT without a size", "EHLO c\r\nBDAT x\r\nQUIT\r\n", "220,250,501", "bdat_syntax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, reason := dialogue(t, testConfig(), &testPolicy{}, c.in)
			if got := codes(r); got != c.want || reason != c.reason {
				t.Errorf("replies %s (%s), want %s (%s)\n%q", got, reason, c.want, c.reason, r)
			}
		})
	}
}

// TestJunkLimit: 100 NOOPs are answered, the 101st gets 421 and the
// session ends; a message accepted in between starts the count again.
func TestJunkLimit(t *testing.T) {
	r, reason := dialogue(t, testConfig(), &testPolicy{}, strings.Repeat("NOOP\r\n", 101)+"QUIT\r\n")
	if got := codes(r); got != "220"+strings.Repeat(",250", 100)+",421" || reason != "too_many_junk" {
		t.Errorf("101 NOOPs: %s (%s)", got, reason)
	}
	msg := "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@c.example>\r\nDATA\r\nx\r\n.\r\n"
	r, reason = dialogue(t, testConfig(), &testPolicy{}, strings.Repeat("NOOP\r\n", 90)+msg+strings.Repeat("NOOP\r\n", 90)+"QUIT\r\n")
	if reason != "quit" || r[len(r)-1][:3] != "221" {
		t.Errorf("NOOPs around a message: %s (%s)", codes(r), reason)
	}
}

// TestBDAT: a message in chunks is one message, byte for byte in stored
// form, even when a chunk holds "\r\n.\r\n"; BDAT and DATA share the size
// limit, and a refused chunk's bytes are never read as commands.
func TestBDAT(t *testing.T) {
	p := &testPolicy{}
	c1 := "Subject: chunks\r\n\r\nline one\r\n.\r\n"
	c2 := "MAIL FROM:<smuggled@evil.example>\r\n..dots\r\n"
	in := "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@c.example>\r\n" +
		"BDAT " + itoa(len(c1)) + "\r\n" + c1 + "BDAT " + itoa(len(c2)) + " LAST\r\n" + c2 + "QUIT\r\n"
	r, _ := dialogue(t, testConfig(), p, in)
	if got := codes(r); got != "220,250,250,250,250,250,221" {
		t.Fatalf("chunks: %s\n%q", got, r)
	}
	want := "Subject: chunks\n\nline one\n.\nMAIL FROM:<smuggled@evil.example>\n..dots\n"
	if len(p.msgs) != 1 || p.msgs[0] != want {
		t.Errorf("stored %q, want one message %q", p.msgs, want)
	}

	cfg := testConfig()
	cfg.MaxMessage = 10
	p = &testPolicy{}
	big := "RSET\r\nQUIT\r\nxxxxxxxx" // 20 bytes: over the limit, and commands inside
	in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@c.example>\r\nBDAT 20 LAST\r\n" + big + "NOOP\r\nQUIT\r\n"
	r, _ = dialogue(t, cfg, p, in)
	if got := codes(r); got != "220,250,250,250,552,250,221" {
		t.Errorf("refused chunk: %s\n%q", got, r)
	}
	if len(p.msgs) != 0 || len(p.refused) != 1 || p.refused[0] != "databytes" {
		t.Errorf("refused chunk: stored %q, refused %q", p.msgs, p.refused)
	}

	// A bare LF inside a chunk refuses the message, not the session.
	p = &testPolicy{}
	in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@c.example>\r\nBDAT 4 LAST\r\na\nb\n" + "NOOP\r\nQUIT\r\n"
	r, _ = dialogue(t, testConfig(), p, in)
	if got := codes(r); got != "220,250,250,250,451,250,221" || len(p.msgs) != 0 {
		t.Errorf("bare LF in a chunk: %s, stored %q", got, p.msgs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestTrickle: a command line trickled a byte at a time is cut off when
// Timeout has passed since it began, though every byte came in time; a
// message trickled below MinDataRate is cut off too.
func TestTrickle(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 600 * time.Millisecond
	trickle := func(setup, slow string) (string, time.Duration) {
		server, client := pair(t)
		defer client.Close()
		done := make(chan string, 1)
		go func() { done <- Serve(server, cfg, tcpserver.Client{}, "test", &testPolicy{}) }()
		go io.Copy(io.Discard, client)
		io.WriteString(client, setup)
		start := time.Now()
		for i := 0; i < len(slow); i++ {
			if _, err := client.Write([]byte{slow[i]}); err != nil {
				break
			}
			select {
			case reason := <-done:
				return reason, time.Since(start)
			case <-time.After(100 * time.Millisecond):
			}
		}
		return <-done, time.Since(start)
	}
	reason, took := trickle("", "EHLO a.very.long.name.that.takes.a.while.example\r\n")
	if reason != "timeout" || took > 2*time.Second {
		t.Errorf("trickled command: ended %q after %v, want timeout after about 600ms", reason, took)
	}
	reason, took = trickle("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@c.example>\r\nDATA\r\n", strings.Repeat("x", 60)+"\r\n.\r\n")
	if reason != "timeout" || took > 2*time.Second {
		t.Errorf("trickled DATA: ended %q after %v, want timeout after about 600ms", reason, took)
	}
}

// TestClientNotReading: a client that sends and never reads its replies
// is cut off once a reply's write has waited Timeout, though the
// session's write deadline is renewed only now and then.
func TestClientNotReading(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout, cfg.MaxJunk = 500*time.Millisecond, 0
	server, client := pair(t)
	defer client.Close()
	client.SetReadBuffer(4 << 10)
	done := make(chan string, 1)
	go func() { done <- Serve(server, cfg, tcpserver.Client{}, "test", &testPolicy{}) }()
	// NOOPs pipelined by the megabyte: their replies fill the socket
	// buffers, and the server's write then waits for a reader that
	// never comes.
	go func() {
		noops := []byte(strings.Repeat("NOOP\r\n", 1<<14))
		for {
			if _, err := client.Write(noops); err != nil {
				return
			}
		}
	}()
	select {
	case reason := <-done:
		if reason != "write_error" {
			t.Errorf("session ended %q, want write_error", reason)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a client that never reads still holds its session after 30s")
	}
}

// TestLineLimit: a line without LF ends the session once past
// LineLimit, without waiting for the rest.
func TestLineLimit(t *testing.T) {
	server, client := pair(t)
	defer client.Close()
	done := make(chan string, 1)
	go func() { done <- Serve(server, testConfig(), tcpserver.Client{}, "test", &testPolicy{}) }()
	go client.Write(bytes.Repeat([]byte("x"), 1<<20))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(client)
	if !strings.HasSuffix(string(out), "421 4.7.0 line too long, closing connection\r\n") {
		t.Errorf("1 MiB line: %q", out)
	}
	if r := <-done; r != "line_limit" {
		t.Errorf("ended %q", r)
	}
}

// TestPipelining: replies to a pipelined group come in one write, after
// the group's last command was read.
func TestPipelining(t *testing.T) {
	server, client := pair(t)
	defer client.Close()
	go Serve(server, testConfig(), tcpserver.Client{}, "test", &testPolicy{})
	br := bufio.NewReader(client)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	br.ReadString('\n')
	io.WriteString(client, "NOOP\r\nNOOP\r\nNOOP\r\n")
	buf := make([]byte, 4096)
	n, _ := br.Read(buf)
	if got := strings.Count(string(buf[:n]), "250 "); got != 3 {
		t.Errorf("first read after a group of 3: %q", buf[:n])
	}
}

// FuzzPipelined throws sequences of commands, pipelined in one write, at
// the core: nothing panics, and every command gets exactly the replies a
// model of RFC 5321's sequence says (one final reply, two for a DATA
// that is let in), until QUIT. The session's memory is its fixed
// buffers: a command line never grows past them (TestLineLimit).
func FuzzPipelined(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 9})
	f.Add([]byte{0, 1, 2, 6, 7, 8, 9})
	f.Add([]byte{5, 5, 5, 10, 11, 12, 13, 0, 1, 2, 14, 6, 3, 15, 16, 7})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		var in strings.Builder
		want := 1 // the greeting
		st := stGreeted
		quit := false
		for _, op := range ops {
			c := fuzzCommands[int(op)%len(fuzzCommands)]
			in.WriteString(c.text)
			if quit {
				continue
			}
			n, next := c.model(st)
			want += n
			st = next
			quit = c.text == "QUIT\r\n"
		}
		cfg := testConfig()
		cfg.MaxJunk, cfg.MaxErrors, cfg.MaxRcpt = 0, 0, 0
		r, reason := dialogue(t, cfg, &testPolicy{}, in.String())
		if len(r) != want || quit && reason != "quit" || !quit && reason != "disconnect" {
			t.Fatalf("%d replies, want %d (ended %s):\n%q\n%q", len(r), want, reason, in.String(), r)
		}
		for _, l := range r {
			if len(l) < 4 || l[0] < '2' || l[0] > '5' {
				t.Fatalf("malformed reply %q", l)
			}
		}
	})
}

// fuzzCommand is one of the fuzzer's words and its model: how many reply
// lines it gets in a state, and the state after it.
type fuzzCommand struct {
	text  string
	model func(state) (int, state)
}

func intro(st state) (int, state) { return 1, stReady }
func same(st state) (int, state)  { return 1, st }
func reset(st state) (int, state) {
	if st == stGreeted {
		return 1, st
	}
	return 1, stReady
}
func mail(st state) (int, state) {
	if st == stReady {
		return 1, stMail
	}
	return 1, st
}
func rcpt(st state) (int, state) {
	if st == stMail || st == stRcpt {
		return 1, stRcpt
	}
	return 1, st
}
func data(st state) (int, state) {
	if st == stRcpt {
		return 2, stReady // 354 and 250
	}
	return 5, st // 503, and the four lines of the body as unknown commands
}
func chunk(last bool) func(state) (int, state) {
	return func(st state) (int, state) {
		switch {
		case st != stRcpt && st != stChunks:
			return 1, st
		case last:
			return 1, stReady
		}
		return 1, stChunks
	}
}

var fuzzCommands = []fuzzCommand{
	{"EHLO c\r\n", intro},
	{"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n", mail},
	{"RCPT TO:<u@c.example>\r\n", rcpt},
	{"DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n", data},
	{"RSET\r\n", reset},
	{"NOOP\r\n", same},
	{"BDAT 5\r\nab\r\n.", chunk(false)},
	{"BDAT 7 LAST\r\n\r\n.\r\nxy", chunk(true)},
	{"BDAT 0 LAST\r\n", chunk(true)},
	{"QUIT\r\n", same},
	{"HELO c\r\n", intro},
	{"VRFY u\r\n", same},
	{"RCPT TO:<bad@c.example>\r\n", same},
	{"STARTTLS\r\n", same},
	{"AUTH PLAIN\r\n", same},
	{"MAIL FROM:<> SMTPUTF8\r\n", mail},
	{"RCPT TO:<us\xc3\xa9r@exampl\xc3\xa9.example>\r\n", rcpt},
	{"HELP\r\n", same},
	{"\r\n", same},
	{"MAIL FROM:<a@b.example> X-UNKNOWN=1\r\n", same},
}

// TestSessionTime: a session ends at MaxSession, however busy the client
// keeps it.
func TestSessionTime(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSession, cfg.MaxJunk = 500*time.Millisecond, 0
	server, client := pair(t)
	defer client.Close()
	done := make(chan string, 1)
	go func() { done <- Serve(server, cfg, tcpserver.Client{}, "test", &testPolicy{}) }()
	br := bufio.NewReader(client)
	client.SetDeadline(time.Now().Add(5 * time.Second))
	br.ReadString('\n')
	start := time.Now()
	var last string
	for time.Since(start) < 3*time.Second {
		if _, err := io.WriteString(client, "NOOP\r\n"); err != nil {
			break
		}
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		last = l
		time.Sleep(50 * time.Millisecond)
	}
	if last != "421 4.4.2 session too long, closing connection\r\n" || time.Since(start) > 2*time.Second {
		t.Errorf("after %v: last reply %q", time.Since(start), last)
	}
	if r := <-done; r != "session_time" {
		t.Errorf("ended %q", r)
	}
}

// TestUnfinishedChunks: BDAT chunks without LAST are abandoned through
// DataEnd, at RSET and when the client goes away.
func TestUnfinishedChunks(t *testing.T) {
	for _, end := range []string{"RSET\r\nQUIT\r\n", ""} {
		p := &testPolicy{}
		dialogue(t, testConfig(), p, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@c.example>\r\nBDAT 3\r\nabc"+end)
		if len(p.msgs) != 0 || len(p.refused) != 1 || p.refused[0] != "unfinished" {
			t.Errorf("ending with %q: stored %q, refused %q", end, p.msgs, p.refused)
		}
	}
}

// The refusal that reaches MaxErrors is answered 421, and its log line
// says 421, the code the client was sent, not the 502 it replaced.
func TestRefusedLogsCodeSent(t *testing.T) {
	var mu sync.Mutex
	var refused []string
	cfg := testConfig()
	cfg.MaxErrors = 3
	cfg.Log = func(severity, event string, kv ...any) {
		if event != "refused" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, strings.TrimSpace(logline.Format(severity, event, kv...)))
	}
	replies, reason := dialogue(t, cfg, &testPolicy{}, "FOO\r\nFOO\r\nFOO\r\nFOO\r\n")
	if got := codes(replies); got != "220,502,502,421" || reason != "too_many_errors" {
		t.Fatalf("replies %s, end %q", got, reason)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"info refused cmd=FOO code=502 reason=unknown_command",
		"info refused cmd=FOO code=502 reason=unknown_command",
		"info refused cmd=FOO code=421 reason=unknown_command",
	}
	if strings.Join(refused, "\n") != strings.Join(want, "\n") {
		t.Errorf("refused lines:\n%s\nwant:\n%s", strings.Join(refused, "\n"), strings.Join(want, "\n"))
	}
}

// logWrites records each write of the log, as one string.
type logWrites struct {
	mu sync.Mutex
	w  []string
}

func (l *logWrites) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = append(l.w, string(p))
	return len(p), nil
}

func (l *logWrites) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.w...)
}

// TestHeldLinesBeforeReplies: a listener holding its lines
// (Config.Waiting) writes a pipelined batch's lines in one write, and a
// line is in the log before the client has its reply: a command sent
// alone has its line written before the session waits for the next.
func TestHeldLinesBeforeReplies(t *testing.T) {
	var log logWrites
	held := logline.New(&log).Hold(logline.With("sid", "t1"))
	cfg := testConfig()
	cfg.Log, cfg.Waiting = held.Log, held.Flush
	server, client := pair(t)
	defer client.Close()
	reason := make(chan string, 1)
	go func() { reason <- Serve(server, cfg, tcpserver.Client{}, "t1", &testPolicy{}) }()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	expect := func(code string) {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, code) {
			t.Fatalf("read %q, %v; want %s", l, err, code)
		}
	}
	expect("220")

	io.WriteString(client, "FOO\r\n")
	expect("502")
	if got, want := log.all(), []string{"info refused sid=t1 cmd=FOO code=502 reason=unknown_command\n"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the client has its reply; the log has %q, want %q", got, want)
	}

	io.WriteString(client, "BAR\r\nBAZ\r\n") // one batch
	expect("502")
	expect("502")
	want := "info refused sid=t1 cmd=BAR code=502 reason=unknown_command\n" +
		"info refused sid=t1 cmd=BAZ code=502 reason=unknown_command\n"
	if got := log.all(); len(got) != 2 || got[1] != want {
		t.Fatalf("the log's writes %q; want the batch's lines in one second write %q", got, want)
	}

	io.WriteString(client, "QUIT\r\n")
	expect("221")
	if r := <-reason; r != "quit" {
		t.Errorf("session ended %q", r)
	}
}
