package qmtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/relay"
	"gw/lib/tcpserver"
)

func TestReadLength(t *testing.T) {
	cases := []struct {
		name, in string
		max      int64
		want     int64
		err      error
	}{
		{"zero", "0:", 100, 0, nil},
		{"twelve", "12:", 100, 12, nil},
		{"at max", "100:", 100, 100, nil},
		{"over max", "101:", 100, 0, ErrTooLong},
		{"2^63", "9223372036854775808:", MaxMessage, 0, ErrTooLong},
		{"many digits", strings.Repeat("9", 5000) + ":", MaxMessage, 0, ErrTooLong},
		{"leading zero", "012:", 100, 0, ErrSyntax},
		{"double zero", "00:", 100, 0, ErrSyntax},
		{"empty", ":", 100, 0, ErrSyntax},
		{"letter", "1a:", 100, 0, ErrSyntax},
		{"space", " 1:", 100, 0, ErrSyntax},
		{"minus", "-1:", 100, 0, ErrSyntax},
		{"eof in digits", "12", 100, 0, io.ErrUnexpectedEOF},
		{"eof at once", "", 100, 0, io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadLength(bufio.NewReader(strings.NewReader(c.in)), c.max)
			if got != c.want || !errors.Is(err, c.err) {
				t.Errorf("ReadLength(%.30q, %d) = %d, %v; want %d, %v", c.in, c.max, got, err, c.want, c.err)
			}
		})
	}
}

// recordingInjector keeps what it is given, as an injector that commits
// with code would have queued it.
type recordingInjector struct {
	mu    sync.Mutex
	code  int
	delay time.Duration
	got   []stored
}

type stored struct {
	msg string
	env envelope.Envelope
}

type recordingTx struct {
	inj *recordingInjector
	buf bytes.Buffer
	env envelope.Envelope
}

func (i *recordingInjector) Begin(env envelope.Envelope) (handoff.Tx, error) {
	return &recordingTx{inj: i, env: env}, nil
}
func (t *recordingTx) Write(p []byte) (int, error)       { return t.buf.Write(p) }
func (t *recordingTx) SetEnvelope(env envelope.Envelope) { t.env = env }
func (t *recordingTx) Abort()                            {}
func (t *recordingTx) Commit() (int, error) {
	time.Sleep(t.inj.delay)
	t.inj.mu.Lock()
	defer t.inj.mu.Unlock()
	if t.inj.code == 0 {
		t.inj.got = append(t.inj.got, stored{t.buf.String(), t.env})
	}
	return t.inj.code, nil
}

func (i *recordingInjector) messages() []stored {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]stored(nil), i.got...)
}

func testConfig() *Config {
	return &Config{Hostname: "mx.example.net", Timeout: 2 * time.Second, Domains: relay.New([]string{"example.net", ".example.org"}),
		Log: logline.New(io.Discard)}
}

// serve starts a server on a loopback port for one client per call and
// returns the address.
func serve(t *testing.T, cfg *Config, cl tcpserver.Client) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go Serve(c, cfg, cl)
		}
	}()
	return ln.Addr().String()
}

// dialogue sends in over a real socket, closes the sending half and
// returns all the server said.
func dialogue(t *testing.T, addr, in string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	out, _ := io.ReadAll(c)
	return string(out)
}

const (
	spec61 = "20:\nSubject: hi\n\nhello\n,13:a@example.org,34:13:b@example.net,13:c@example.net,,"
	spec62 = "23:\rSubject: hi\r\n\r\nhello\r\n,0:,17:13:b@example.net,,"
)

// hopsPackage is a package whose message has n Received lines, in the
// CRLF encoding.
// list is a recipient list of one address.
func list(rcpt string) string {
	return string(Append(nil, string(Append(nil, rcpt))))
}

func hopsPackage(n int) string {
	msg := "\r" + strings.Repeat("Received: from a by b\r\n", n) + "\r\nbody\r\n"
	return strconv.Itoa(len(msg)) + ":" + msg + ",0:,6:3:x@y,,"
}

// TestSpecExamples replays the byte-level examples of specs/qmtp.md.
func TestSpecExamples(t *testing.T) {
	type want struct {
		resp    string // the responses, with K's varying text replaced by "K"
		body    string // the stored message after the Received line
		sender  string
		rcpts   []string
		queued  int
		rcptsOK bool
	}
	cases := []struct {
		name  string
		relay bool
		code  int
		dbyt  int64
		in    string
		want  want
	}{
		{"6.1 LF two recipients", false, 0, 0, spec61, want{"K,K,", "Subject: hi\n\nhello\n", "a@example.org", []string{"b@example.net", "c@example.net"}, 1, true}},
		{"6.2 CRLF null sender", false, 0, 0, spec62, want{"K,", "Subject: hi\n\nhello\n", "", []string{"b@example.net"}, 1, true}},
		{"6.2 pipelined after 6.1", false, 0, 0, spec61 + spec62, want{"K,K,K,", "", "", nil, 2, false}},
		{"lone CR kept", true, 0, 0, "6:\ra\rb\r\n,0:,6:3:x@y,,", want{"K,", "a\rb\n", "", []string{"x@y"}, 1, true}},
		{"partial last line", true, 0, 0, "4:\nabc,0:,6:3:x@y,,", want{"K,", "abc", "", []string{"x@y"}, 1, true}},
		{"not in rcpthosts", false, 0, 0, "2:\na,0:,17:13:b@example.com,,",
			want{"66:Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1),", "", "", nil, 0, false}},
		{"one of two refused", false, 0, 0, "2:\na,0:,34:13:b@example.com,13:b@example.net,,",
			want{"66:Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1),K,", "a", "", []string{"b@example.net"}, 1, true}},
		{"relay appends", true, 0, 0, "2:\na,0:,17:13:b@example.com,,", want{"K,", "a", "", []string{"b@example.com"}, 1, true}},
		{"databytes LF", false, 0, 3, "5:\nabcd,0:,17:13:b@example.net,,",
			want{"61:Dsorry, that message size exceeds my databytes limit (#5.3.4),", "", "", nil, 0, false}},
		{"databytes CRLF counts stored bytes", false, 0, 4, "6:\rab\r\nc,0:,17:13:b@example.net,,", want{"K,", "ab\nc", "", []string{"b@example.net"}, 1, true}},
		{"unacceptable sender", false, 0, 0, "2:\na,1000:" + strings.Repeat("s", 1000) + ",17:13:b@example.net,,",
			want{"29:Dunacceptable sender (#5.1.7),", "", "", nil, 0, false}},
		{"long recipient", true, 0, 0, "2:\na,0:,1006:1000:" + strings.Repeat("r", 1000) + ",,",
			want{"46:Dsorry, I can't handle that recipient (#5.1.3),", "", "", nil, 0, false}},
		{"disk full", false, 53, 0, "2:\na,0:,17:13:b@example.net,,", want{"37:Zqq write error or disk full (#4.3.0),", "", "", nil, 0, false}},
		{"refused by filter", false, 31, 0, "2:\na,0:,17:13:b@example.net,,",
			want{"50:Dmail server permanently rejected message (#5.3.0),", "", "", nil, 0, false}},
		{"bad encoding byte", true, 0, 0, "2:xa,0:,6:3:x@y,,", want{"", "", "", nil, 0, false}},
		{"missing comma", true, 0, 0, "2:\na;0:,6:3:x@y,,", want{"", "", "", nil, 0, false}},
		{"truncated", true, 0, 0, "200:\nabc", want{"", "", "", nil, 0, false}},
		{"empty message", true, 0, 0, "0:,0:,6:3:x@y,,", want{"", "", "", nil, 0, false}},
		{"no recipients", true, 0, 0, "2:\na,0:,0:,", want{"", "", "", nil, 0, false}},
		{"recipient overruns list", true, 0, 0, "2:\na,0:,4:2:x@,,", want{"", "", "", nil, 0, false}},
		{"99 hops pass", true, 0, 0, hopsPackage(99), want{"K,", "", "", []string{"x@y"}, 1, false}},
		{"100 hops loop", true, 0, 0, hopsPackage(100),
			want{"48:Dtoo many hops, this message is looping (#5.4.6),", "", "", nil, 0, false}},
		{"ESC in a recipient", true, 0, 0, "2:\na,0:," + list("x\x1b[m@y"),
			want{"54:Dsorry, that recipient address has bad syntax (#5.1.3),", "", "", nil, 0, false}},
		{"parameters in a local part: sender routing", false, 0, 0, "2:\na,0:," + list("v@victim.test> NOTIFY=NEVER ORCPT=rfc822;x@example.com"),
			want{"49:Dsender-specified routing is not allowed (#5.7.1),", "", "", nil, 0, false}},
		{"parameters in a local part: relay client", true, 0, 0, "2:\na,0:," + list("v@victim.test> NOTIFY=NEVER@example.com"),
			want{"K,", "a", "", []string{"v@victim.test> NOTIFY=NEVER@example.com"}, 1, true}},
		{"parameters in the sender's domain", true, 0, 0, "2:\na,17:s@gw.test> SIZE=1,17:13:b@example.com,,",
			want{"29:Dunacceptable sender (#5.1.7),", "", "", nil, 0, false}},
		{"answered before a bad package", true, 0, 0, "2:\na,0:,6:3:x@y,,2:xa,", want{"K,", "a", "", []string{"x@y"}, 1, true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inj := &recordingInjector{code: c.code}
			cfg := testConfig()
			cfg.Databytes = c.dbyt
			cl := tcpserver.Client{RemoteIP: "127.0.0.1", LocalHost: "mx.example.net", Relay: c.relay, Injector: inj}
			out := dialogue(t, serve(t, cfg, cl), c.in)
			if got := maskK(t, out); got != c.want.resp {
				t.Errorf("responses %q, want %q", out, c.want.resp)
			}
			got := inj.messages()
			if len(got) != c.want.queued {
				t.Fatalf("queued %d messages, want %d: %+v", len(got), c.want.queued, got)
			}
			if !c.want.rcptsOK {
				return
			}
			m := got[0]
			hdr, body, _ := strings.Cut(m.msg, "\n  by mx.example.net with QMTP; ")
			if hdr != "Received: from unknown (127.0.0.1)" {
				t.Errorf("Received line %q", m.msg)
			}
			if _, rest, ok := strings.Cut(body, "\n"); !ok || rest != c.want.body {
				t.Errorf("stored %q, want %q after the Received line", m.msg, c.want.body)
			}
			if m.env.Sender != c.want.sender || strings.Join(m.env.Recipients, " ") != strings.Join(c.want.rcpts, " ") {
				t.Errorf("envelope %q %q, want %q %q", m.env.Sender, m.env.Recipients, c.want.sender, c.want.rcpts)
			}
		})
	}
}

// maskK checks each response is a netstring and replaces a K response by
// "K," (its text names a time and an id).
func maskK(t *testing.T, out string) string {
	br := bufio.NewReader(strings.NewReader(out))
	var b strings.Builder
	for {
		if _, err := br.Peek(1); err != nil {
			return b.String()
		}
		s, _, err := ReadString(br, MaxResponse, MaxResponse)
		if err != nil {
			t.Errorf("response %q: %v", out, err)
			return b.String()
		}
		if len(s) > 0 && s[0] == 'K' {
			b.WriteString("K,")
			continue
		}
		b.Write(Append(nil, string(s)))
	}
}

// TestClientPipelines sends many packages from many goroutines on one
// connection; each gets its own responses, in order.
func TestClientPipelines(t *testing.T) {
	inj := &recordingInjector{delay: time.Millisecond}
	addr := serve(t, testConfig(), tcpserver.Client{RemoteIP: "127.0.0.1", Injector: inj})
	q, err := Dial(context.Background(), addr, time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)
			rcpts := []string{fmt.Sprintf("u%d@example.net", i), "x@elsewhere.example"}
			p, err := q.Send("s@example.org", rcpts, int64(len(msg)), strings.NewReader(msg))
			if err != nil {
				t.Error(err)
				return
			}
			r, err := p.Wait(context.Background())
			if err != nil || len(r) != 2 || r[0].Code != 'K' || r[1].Code != 'D' || !strings.Contains(r[1].Text, "#5.7.1") {
				t.Errorf("package %d: %v %q", i, err, r)
			}
		}()
	}
	wg.Wait()
	got := inj.messages()
	if len(got) != 100 {
		t.Fatalf("%d messages queued, want 100", len(got))
	}
	for _, m := range got {
		n := strings.TrimPrefix(m.env.Recipients[0], "u")
		n = strings.TrimSuffix(n, "@example.net")
		if !strings.HasSuffix(m.msg, "\nSubject: "+n+"\n\nbody "+n+"\n") || len(m.env.Recipients) != 1 {
			t.Errorf("message for %q is %q", m.env.Recipients, m.msg)
		}
	}
}

// TestClientShortBody breaks the connection rather than let a short
// message pass for a whole one.
func TestClientShortBody(t *testing.T) {
	inj := &recordingInjector{}
	addr := serve(t, testConfig(), tcpserver.Client{RemoteIP: "127.0.0.1", Injector: inj})
	q, err := Dial(context.Background(), addr, time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Send("", []string{"a@example.net"}, 10, strings.NewReader("short")); err == nil {
		t.Fatal("short body sent")
	}
	if q.Err() == nil {
		t.Error("connection not broken")
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(inj.messages()); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestHostileLengths: a declared length of 2^63 ends the session at once,
// and a length that never arrives ends at the timeout; neither allocates
// what it declares.
func TestHostileLengths(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 300 * time.Millisecond
	addr := serve(t, cfg, tcpserver.Client{RemoteIP: "127.0.0.1", Relay: true, Injector: &recordingInjector{}})
	for _, in := range []string{"9223372036854775808:", "199999999:\n" + strings.Repeat("x", 1000), "2:\na,0:,2000000:"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		io.WriteString(c, in)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%.30q: read %d, %v; want the server to close", in, n, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%.30q: closed after %v", in, d)
		}
		c.Close()
	}
}
