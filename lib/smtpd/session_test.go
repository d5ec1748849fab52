package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/relay"
	"gw/lib/smtpserver"
)

// recordingInjector keeps what it is given; code is the exit code it
// answers with, as a gw-queue that queued (0) or refused would.
type recordingInjector struct {
	mu      sync.Mutex
	code    int
	msgs    []recorded
	aborted int
}

type recorded struct {
	env  envelope.Envelope
	body string
}

type recordingTx struct {
	inj *recordingInjector
	env envelope.Envelope
	buf bytes.Buffer
}

func (r *recordingInjector) Begin(env envelope.Envelope) (handoff.Tx, error) {
	env.Recipients = append([]string(nil), env.Recipients...)
	return &recordingTx{inj: r, env: env}, nil
}

func (t *recordingTx) Write(p []byte) (int, error) { return t.buf.Write(p) }
func (t *recordingTx) Commit() (int, error) {
	t.inj.mu.Lock()
	defer t.inj.mu.Unlock()
	if t.inj.code == 0 {
		t.inj.msgs = append(t.inj.msgs, recorded{t.env, t.buf.String()})
	}
	return t.inj.code, nil
}
func (t *recordingTx) Abort() {
	t.inj.mu.Lock()
	t.inj.aborted++
	t.inj.mu.Unlock()
}

func testConfig() *Config {
	return &Config{
		Hostname: "gw.example.net", Greeting: "gw.example.net", LocalIPHost: "gw.example.net",
		MaxRcpt: 3, MaxErrors: 5, MaxBadRcpt: 5, Timeout: 5 * time.Second,
		Domains:     relay.New([]string{"example.com", ".example.org"}),
		BadMailFrom: NewPatterns([]string{"spammer@bad.example", "@worse.example", "*@*.spam.example"}),
		BadRcptTo:   NewPatterns([]string{"nobody@example.com"}),
		Log:         logline.New(io.Discard),
	}
}

// converse runs a session over a pipe, sends in, and returns the final
// line of every reply (continuation lines dropped).
func converse(t testing.TB, cfg *Config, cl Client, in string) ([]string, *recordingInjector) {
	t.Helper()
	inj := &recordingInjector{}
	if cl.Injector == nil {
		cl.Injector = inj
	}
	server, client := tcpPair(t)
	done := make(chan struct{})
	go func() { Serve(server, cfg, cl); close(done) }()
	var replies []string
	br := bufio.NewReader(client)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The greeting first: a client that talks before it is refused.
	if line, err := br.ReadString('\n'); err == nil {
		replies = append(replies, strings.TrimRight(line, "\r\n"))
	}
	go func() { io.WriteString(client, in); client.CloseWrite() }()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		replies = append(replies, strings.TrimRight(line, "\r\n"))
	}
	client.Close()
	<-done
	return replies, inj
}

// tcpPair returns the two ends of a loopback TCP connection: unlike
// net.Pipe, the client can half-close, so the session sees the end.
func tcpPair(t testing.TB) (net.Conn, *net.TCPConn) {
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

func codes(replies []string) string {
	var b []string
	for _, r := range replies {
		f := strings.Fields(r)
		if len(f) > 1 && f[0] != "220" && f[0] != "354" && strings.Count(f[1], ".") == 2 {
			b = append(b, f[0]+" "+f[1])
		} else if len(f) > 0 {
			b = append(b, f[0])
		}
	}
	return strings.Join(b, ",")
}

func TestRecipientPolicy(t *testing.T) {
	cases := []struct {
		name  string
		relay bool
		rcpt  string
		want  string
	}{
		{"local domain", false, "<u@example.com>", "250 2.0.0"},
		{"local domain, upper case", false, "<U@EXAMPLE.COM>", "250 2.0.0"},
		{"subdomain via .suffix", false, "<u@a.example.org>", "250 2.0.0"},
		{"trailing dot", false, "<u@example.com.>", "250 2.0.0"},
		{"other domain", false, "<u@evil.example>", "553 5.7.1"},
		{"parent of .suffix", false, "<u@example.org>", "553 5.7.1"},
		{"percent hack", false, "<u%evil.example@example.com>", "553 5.7.1"},
		{"bang path", false, "<evil.example!u@example.com>", "553 5.7.1"},
		{"quoted at", false, `<"u@evil.example"@example.com>`, "553 5.1.3"},
		{"quoted plain", false, `<"u"@example.com>`, "250 2.0.0"},
		{"two ats", false, "<u@evil.example@example.com>", "501 5.1.3"},
		{"source route to evil", false, "<@example.com:u@evil.example>", "553 5.7.1"},
		{"source route to local", false, "<@evil.example:u@example.com>", "250 2.0.0"},
		{"ip literal", false, "<u@[192.0.2.1]>", "553 5.7.1"},
		{"ipv6 literal", false, "<u@[IPv6:2001:db8::1]>", "553 5.7.1"},
		{"double trailing dot", false, "<u@example.com..>", "501 5.1.3"},
		{"suffix trick", false, "<u@evilexample.com>", "553 5.7.1"},
		{"postmaster without domain", false, "<Postmaster>", "250 2.0.0"},
		{"other user without domain", false, "<root>", "501 5.1.3"},
		{"null recipient", false, "<>", "501 5.1.3"},
		{"badrcptto", false, "<nobody@example.com>", "553 5.7.1"},
		{"non-ascii", false, "<ü@example.com>", "553 5.6.7"},
		{"no brackets", false, "u@example.com", "250 2.0.0"},
		{"DSN parameters", false, "<u@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@example.com", "250 2.0.0"},
		{"NOTIFY twice", false, "<u@example.com> NOTIFY=NEVER NOTIFY=SUCCESS", "501 5.5.4"},
		{"NOTIFY=NEVER with another", false, "<u@example.com> NOTIFY=NEVER,DELAY", "501 5.5.4"},
		{"ORCPT without type", false, "<u@example.com> ORCPT=u@example.com", "501 5.5.4"},
		{"unknown parameter refused", false, "<u@example.com> FOO=BAR", "555 5.5.4"},
		{"relay client, other domain", true, "<u@evil.example>", "250 2.0.0"},
		{"relay client, literal", true, "<u@[192.0.2.1]>", "250 2.0.0"},
		{"relay client, bad syntax", true, "<u@@evil>", "501 5.1.3"},
		{"long local part", false, "<" + strings.Repeat("a", 65) + "@example.com>", "501 5.1.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := converse(t, testConfig(), Client{RemoteIP: "192.0.2.9", Relay: c.relay}, "EHLO x\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:"+c.rcpt+"\r\nQUIT\r\n")
			got := codes(r)
			want := "220,250,250 2.0.0," + c.want + ",221 2.0.0"
			if got != want {
				t.Errorf("RCPT TO:%s relay=%v: replies %s\nwant %s\n%q", c.rcpt, c.relay, got, want, r)
			}
		})
	}
}

func TestSenderPolicy(t *testing.T) {
	cases := []struct{ from, mail, rcpt string }{
		{"<>", "250 2.0.0", "250 2.0.0"},
		{"<spammer@bad.example>", "250 2.0.0", "553 5.7.1"},
		{"<SPAMMER@Bad.Example>", "250 2.0.0", "553 5.7.1"},
		{"<x@worse.example>", "250 2.0.0", "553 5.7.1"},
		{"<x@a.spam.example>", "250 2.0.0", "553 5.7.1"},
		{"<postmaster>", "553 5.1.7", "503 5.5.1"},
		{"<a b@c.example>", "553 5.1.7", "503 5.5.1"},
		{"<s@sender.example> SIZE=100", "250 2.0.0", "250 2.0.0"},
		{"<s@sender.example> SIZE=99999999", "552 5.3.4", "503 5.5.1"},
		{"<s@sender.example> AUTH=<>", "250 2.0.0", "250 2.0.0"},
		{"<s@sender.example> AUTH=x+00y@c.example", "501 5.5.4", "503 5.5.1"},
		{"<s@sender.example> AUTH=x+0Ay@c.example", "501 5.5.4", "503 5.5.1"},
		{"<s@sender.example> FOO=BAR", "555 5.5.4", "503 5.5.1"},
		{"<s@sender.example> RET=HDRS ENVID=QQ+2B1", "250 2.0.0", "250 2.0.0"},
		{"<s@sender.example> RET=HDRS RET=FULL", "501 5.5.4", "503 5.5.1"},
		{"<s@sender.example> RET=SOME", "501 5.5.4", "503 5.5.1"},
		{"<s@sender.example> ENVID=a+0Ab", "501 5.5.4", "503 5.5.1"},
		{"<#@[]>", "250 2.0.0", "250 2.0.0"}, // a double bounce passing through
		{"<a@[]>", "553 5.1.7", "503 5.5.1"}, // only the double-bounce sender has an empty literal
	}
	for _, c := range cases {
		t.Run(c.from, func(t *testing.T) {
			cfg := testConfig()
			cfg.Databytes = 1000
			r, _ := converse(t, cfg, Client{}, "EHLO x\r\nMAIL FROM:"+c.from+"\r\nRCPT TO:<u@example.com>\r\nQUIT\r\n")
			if got, want := codes(r), "220,250,"+c.mail+","+c.rcpt+",221 2.0.0"; got != want {
				t.Errorf("MAIL FROM:%s: %s, want %s", c.from, got, want)
			}
		})
	}
}

// TestDSNInEnvelope: what MAIL and RCPT asked of DSN goes to the
// injector with the envelope, each recipient's with it; a RSET forgets
// the transaction's.
func TestDSNInEnvelope(t *testing.T) {
	in := "EHLO client\r\nMAIL FROM:<x@sender.example> RET=FULL\r\nRSET\r\n" +
		"MAIL FROM:<s@sender.example> RET=HDRS ENVID=QQ+2B1\r\n" +
		"RCPT TO:<u@example.com>\r\nRCPT TO:<v@example.com> NOTIFY=never ORCPT=rfc822;v+2Bold@example.com\r\n" +
		"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	r, inj := converse(t, testConfig(), Client{RemoteIP: "192.0.2.9"}, in)
	if len(inj.msgs) != 1 {
		t.Fatalf("%d messages queued; replies %s", len(inj.msgs), codes(r))
	}
	e := inj.msgs[0].env
	if e.DSN != (dsn.Mail{Ret: dsn.RetHdrs, EnvID: "QQ+1"}) {
		t.Errorf("message DSN %+v", e.DSN)
	}
	if d := e.RcptDSNOf(0); !d.IsZero() {
		t.Errorf("first recipient's DSN %+v, want none", d)
	}
	if d := e.RcptDSNOf(1); d != (dsn.Rcpt{Notify: dsn.NotifyNever, ORcptType: "rfc822", ORcpt: "v+old@example.com"}) {
		t.Errorf("second recipient's DSN %+v", d)
	}
}

func TestMessage(t *testing.T) {
	in := "EHLO client\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n" +
		"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
	r, inj := converse(t, testConfig(), Client{RemoteIP: "192.0.2.9", LocalIP: "192.0.2.1", LocalHost: "gw.example.net"}, in)
	if got := codes(r); !regexp.MustCompile(`^220,250,250 2.0.0,250 2.0.0,250 2.0.0,354,250 2.0.0,221 2.0.0$`).MatchString(got) {
		t.Fatalf("replies %s", got)
	}
	if len(inj.msgs) != 1 {
		t.Fatalf("%d messages queued", len(inj.msgs))
	}
	m := inj.msgs[0]
	if m.env.Sender != "s@sender.example" || strings.Join(m.env.Recipients, " ") != "u@example.com v@example.com" {
		t.Errorf("envelope %+v", m.env)
	}
	re := regexp.MustCompile(`^Received: from unknown \(HELO client\) \(192\.0\.2\.9\)\n  by gw\.example\.net \(gw-smtpd\) with ESMTP id \S+; \d+ \w+ \d{4} \d\d:\d\d:\d\d -0000\nSubject: hi\n\n\.dot\nbody\n$`)
	if !re.MatchString(m.body) {
		t.Errorf("stored message:\n%q", m.body)
	}
}

func TestReceivedSanitized(t *testing.T) {
	in := "HELO evil\x7f(x)\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nx\r\n.\r\n"
	_, inj := converse(t, testConfig(), Client{RemoteIP: "192.0.2.9", RemoteHost: "a b\tc", HasRemoteHost: true, RemoteInfo: "i\x01", HasRemoteInfo: true}, in)
	if len(inj.msgs) != 1 {
		t.Fatal("no message")
	}
	first := strings.SplitN(inj.msgs[0].body, "\n", 2)[0]
	if want := "Received: from a?b?c (HELO evil??x?) (i?@192.0.2.9)"; first != want {
		t.Errorf("first line %q, want %q", first, want)
	}
}

func TestDataPolicy(t *testing.T) {
	head := "EHLO x\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n"
	cases := []struct {
		name, body, want string
		queued           int
	}{
		{"bare LF closes", "a\nb\r\n.\r\nQUIT\r\n", "354,451 4.5.2", 0},
		{"bare CR closes", "a\rb\r\n.\r\nQUIT\r\n", "354,451 4.5.2", 0},
		{"smuggling LF.LF", "a\r\n.\nMAIL FROM:<x@y.example>\r\n.\r\nQUIT\r\n", "354,451 4.5.2", 0},
		{"stray CR before the end", "text\r\r\n.\r\nQUIT\r\n", "354,250 2.0.0,221 2.0.0", 1},
		{"too big", strings.Repeat("0123456789\r\n", 20) + ".\r\nQUIT\r\n", "354,552 5.3.4,221 2.0.0", 0},
		{"looping", strings.Repeat("Received: x\r\n", 100) + "\r\nb\r\n.\r\nQUIT\r\n", "354,554 5.4.6,221 2.0.0", 0},
		{"99 hops pass", strings.Repeat("Delivered-To: x\r\n", 98) + "\r\nb\r\n.\r\nQUIT\r\n", "354,250 2.0.0,221 2.0.0", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Databytes = 200
			if c.name == "looping" || c.name == "99 hops pass" {
				cfg.Databytes = 0
			}
			r, inj := converse(t, cfg, Client{}, head+c.body)
			if got, want := codes(r), "220,250,250 2.0.0,250 2.0.0,"+c.want; got != want {
				t.Errorf("replies %s, want %s", got, want)
			}
			if len(inj.msgs) != c.queued {
				t.Errorf("%d queued, want %d", len(inj.msgs), c.queued)
			}
		})
	}
}

func TestQueueCodes(t *testing.T) {
	cases := []struct {
		code int
		want string
	}{
		{53, "451 4.3.0 qq write error or disk full"},
		{31, "554 5.3.0 mail server permanently rejected message"},
		{11, "554 5.1.3 envelope address too long for qq"},
		{72, "451 4.4.1 connection to mail server timed out"},
		{99, "451 4.3.0 qq temporary problem"},
	}
	for _, c := range cases {
		inj := &recordingInjector{code: c.code}
		r, _ := converse(t, testConfig(), Client{Injector: inj}, "HELO x\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
		if len(r) < 6 || r[5] != c.want {
			t.Errorf("exit %d: replies %q, want %q after DATA", c.code, r, c.want)
		}
	}
}

func TestLimits(t *testing.T) {
	t.Run("recipients", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, "HELO x\r\nMAIL FROM:<>\r\n"+strings.Repeat("RCPT TO:<u@example.com>\r\n", 4)+"QUIT\r\n")
		if got, want := codes(r), "220,250 2.0.0,250 2.0.0,250 2.0.0,250 2.0.0,250 2.0.0,452 4.5.3,221 2.0.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("errors", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, strings.Repeat("BOGUS\r\n", 6))
		if got, want := codes(r), "220,502 5.5.1,502 5.5.1,502 5.5.1,502 5.5.1,421 4.7.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("bad recipients", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, "HELO x\r\nMAIL FROM:<>\r\n"+strings.Repeat("RCPT TO:<u@evil.example>\r\n", 6))
		if got, want := codes(r), "220,250 2.0.0,250 2.0.0,553 5.7.1,553 5.7.1,553 5.7.1,553 5.7.1,421 4.7.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("long line", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, "NOOP "+strings.Repeat("x", MaxCommandLine)+"\r\nNOOP\r\nQUIT\r\n")
		if got, want := codes(r), "220,500 5.5.2,250 2.0.0,221 2.0.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("CR inside a command", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, "HELO a\rInjected: yes\r\nQUIT\r\n")
		if got, want := codes(r), "220,500 5.5.2,221 2.0.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("sequence", func(t *testing.T) {
		r, _ := converse(t, testConfig(), Client{}, "EHLO x\r\nRCPT TO:<u@example.com>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\nSTARTTLS\r\nAUTH PLAIN\r\nQUIT\r\n")
		if got, want := codes(r), "220,250,503 5.5.1,503 5.5.1,250 2.0.0,503 5.5.1,503 5.5.1,421 4.7.0"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		cfg := testConfig()
		cfg.Timeout = 200 * time.Millisecond
		server, client := tcpPair(t)
		go Serve(server, cfg, Client{Injector: &recordingInjector{}})
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		bufio.NewReader(io.LimitReader(client, 1)).ReadByte() // the greeting has begun
		io.WriteString(client, "NOOP\r\n")                    // and then nothing, without closing
		out, _ := io.ReadAll(client)
		if !strings.Contains(string(out), "\r\n250 2.0.0 ") || !strings.HasSuffix(string(out), "\r\n451 4.4.2 timeout, closing connection\r\n") {
			t.Errorf("silent client got %q", out)
		}
	})
}

// slowReader sends one line at a time with a pause shorter than the
// timeout: the session must not time out, however long the whole takes.
func TestTimeoutRefreshesOnProgress(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 300 * time.Millisecond
	inj := &recordingInjector{}
	server, client := net.Pipe()
	done := make(chan struct{})
	go func() { Serve(server, cfg, Client{Injector: inj}); close(done) }()
	go io.Copy(io.Discard, client)
	io.WriteString(client, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n")
	for i := 0; i < 6; i++ {
		time.Sleep(150 * time.Millisecond)
		io.WriteString(client, "line\r\n")
	}
	io.WriteString(client, ".\r\nQUIT\r\n")
	<-done
	if len(inj.msgs) != 1 {
		t.Fatalf("slow but steady message not queued (%d)", len(inj.msgs))
	}
}

// FuzzSession throws command lines at a session: every reply must be a
// well-formed reply line with an enhanced code (greeting and 354/334
// aside), nothing may panic or hang, and every line the session logged
// (the tap heard) is in the log once it has ended, the end line last:
// none is left held.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
		"HELO x\nMAIL FROM: <a@b.example> SIZE=10 BODY=8BITMIME\nRCPT TO:<\"a\\\"b\"@example.com>\n",
		"RCPT TO:<@a,@b:u@example.com>\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nRSET\r\nVRFY x\r\nNOOP\r\n",
		"AUTH PLAIN AGEAYg==\r\nSTARTTLSX\r\nMAIL FROM:<a@[IPv6:::1]>\r\n",
	} {
		f.Add(s)
	}
	re := regexp.MustCompile(`^(220 .*|354 .*|334 .*|[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3} [ -~]*|250-[ -~]*|250 SIZE( \d+)?)$`)
	f.Fuzz(func(t *testing.T, in string) {
		cfg := testConfig()
		cfg.Timeout = time.Second
		var log syncBuffer
		var heard atomic.Int64
		cfg.Log = logline.New(&log)
		cfg.Log.Tap(func(string, string, []any) { heard.Add(1) })
		r, _ := converse(t, cfg, Client{}, in)
		for _, line := range r {
			if !re.MatchString(line) {
				t.Fatalf("input %q: malformed reply %q", in, line)
			}
		}
		lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
		if int64(len(lines)) != heard.Load() || !strings.HasPrefix(lines[len(lines)-1], "info end ") {
			t.Fatalf("input %q: %d events logged, %d lines written, the last %q", in, heard.Load(), len(lines), lines[len(lines)-1])
		}
	})
}

// TestSizeRefusalLogged: the core refuses MAIL SIZE= over databytes
// before the policy hears of it; the refusal is logged all the same.
func TestSizeRefusalLogged(t *testing.T) {
	var log syncBuffer
	cfg := testConfig()
	cfg.Databytes = 1000
	cfg.Log = logline.New(&log)
	r, _ := converse(t, cfg, Client{}, "EHLO x\r\nMAIL FROM:<s@sender.example> SIZE=5000\r\nQUIT\r\n")
	if got, want := codes(r), "220,250,552 5.3.4,221 2.0.0"; got != want {
		t.Fatalf("%s, want %s", got, want)
	}
	if !strings.Contains(log.String(), "info refused sid=") || !strings.Contains(log.String(), "cmd=MAIL code=552 reason=size") {
		t.Errorf("no mail refusal in the log:\n%s", log.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the session's goroutine and the
// test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDoubleBounceSenderQueued: qmail's and gw-send's double-bounce sender
// is queued as it was written, so the next gateway drops its failure too.
func TestDoubleBounceSenderQueued(t *testing.T) {
	_, inj := converse(t, testConfig(), Client{}, "HELO x\r\nMAIL FROM:<#@[]>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: b\r\n\r\nx\r\n.\r\nQUIT\r\n")
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if len(inj.msgs) != 1 || inj.msgs[0].env.Sender != "#@[]" {
		t.Fatalf("queued %+v, want one message from #@[]", inj.msgs)
	}
}

// TestMailTimeFields: header fields a check at MAIL or RCPT adds go on
// top of the message, below gw-smtpd's Received line.
func TestMailTimeFields(t *testing.T) {
	inj := &recordingInjector{}
	s := &session{cfg: testConfig(), cl: Client{Injector: inj}, id: "test", log: func(string, string, ...any) {}}
	ss := &smtpserver.Session{Mail: &smtpserver.Mail{Prepend: []string{"Received-SPF: pass (test)\n"}}}
	s.ss = ss
	s.rcpts = []string{"u@example.com"}
	w, r := s.Data(ss)
	if r != nil {
		t.Fatal(r)
	}
	io.WriteString(w, "Subject: x\n\nbody\n")
	if r := s.DataEnd(ss, &smtpserver.Message{Size: 17}); r == nil || r.Code != 250 {
		t.Fatalf("DataEnd: %v", r)
	}
	if len(inj.msgs) != 1 {
		t.Fatalf("%d messages", len(inj.msgs))
	}
	if _, rest, _ := strings.Cut(inj.msgs[0].body, "\nReceived-SPF:"); rest != " pass (test)\nSubject: x\n\nbody\n" || !strings.HasPrefix(inj.msgs[0].body, "Received: from ") {
		t.Errorf("queued %q", inj.msgs[0].body)
	}
}
