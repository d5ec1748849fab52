package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseClamdReply(t *testing.T) {
	cases := []struct {
		name, in string
		infected bool
		sig      string
		err      bool
	}{
		{"clean nul", "stream: OK\x00", false, "", false},
		{"clean lf", "stream: OK\n", false, "", false},
		{"found", "stream: Test.Eicar.Custom.HDB.UNOFFICIAL FOUND\x00", true, "Test.Eicar.Custom.HDB.UNOFFICIAL", false},
		{"size limit", "INSTREAM size limit exceeded. ERROR\x00", false, "", true},
		{"empty name", "stream:  FOUND", false, "", true},
		{"garbage", "PONG\x00", false, "", true},
		{"empty", "", false, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := ParseClamdReply(c.in)
			if (err != nil) != c.err || res.Infected != c.infected || res.Name != c.sig {
				t.Errorf("ParseClamdReply(%q) = %+v, %v; want infected=%v name=%q err=%v", c.in, res, err, c.infected, c.sig, c.err)
			}
		})
	}
}

// fakeClamd answers one INSTREAM and records the chunk lengths it saw.
func fakeClamd(t *testing.T, reply string, limit int) (addr string, chunks chan []int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	chunks = make(chan []int, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		cmd, _ := br.ReadString(0)
		if cmd != "zINSTREAM\x00" {
			c.Write([]byte("UNKNOWN COMMAND\x00"))
			return
		}
		var seen []int
		total := 0
		for {
			var n uint32
			if binary.Read(br, binary.BigEndian, &n) != nil {
				return
			}
			if n == 0 {
				break
			}
			seen = append(seen, int(n))
			io.CopyN(io.Discard, br, int64(n))
			total += int(n)
			if limit > 0 && total > limit {
				c.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
				chunks <- seen
				return
			}
		}
		chunks <- seen
		c.Write([]byte(reply))
	}()
	return l.Addr().String(), chunks
}

func TestClamdChunks(t *testing.T) {
	addr, chunks := fakeClamd(t, "stream: X FOUND\x00", 0)
	msg := bytes.Repeat([]byte("a"), 150<<10)
	c := &Clamd{Addr: addr, Timeout: 5 * time.Second}
	res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
	if err != nil || !res.Infected || res.Name != "X" {
		t.Fatalf("Scan = %+v, %v", res, err)
	}
	if got := <-chunks; len(got) != 3 || got[0] != chunkSize || got[2] != 150<<10-2*chunkSize {
		t.Errorf("chunks %v, want two of %d and the rest", got, chunkSize)
	}
}

func TestClamdLimits(t *testing.T) {
	addr, _ := fakeClamd(t, "stream: OK\x00", 100<<10)
	msg := bytes.Repeat([]byte("a"), 1<<20)
	c := &Clamd{Addr: addr, Timeout: 5 * time.Second}
	if _, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg))); err == nil || !strings.Contains(err.Error(), "size limit") {
		t.Errorf("over clamd's StreamMaxLength: err %v, want the size limit error", err)
	}
	c.MaxStream = 1000
	if _, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg))); err != ErrTooBig {
		t.Errorf("over MaxStream: err %v, want ErrTooBig", err)
	}
	// A clamd that never answers: the timeout, not a hang.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	slow := &Clamd{Addr: l.Addr().String(), Timeout: 200 * time.Millisecond}
	start := time.Now()
	if _, err := slow.Scan(context.Background(), strings.NewReader("x"), 1); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("silent clamd: err %v after %v", err, time.Since(start))
	}
}

func TestReadSpamdReply(t *testing.T) {
	cases := []struct {
		name, in string
		spam     bool
		score    float64
		syms     int
		err      bool
	}{
		{"gtube", "SPAMD/1.1 0 EX_OK\r\nContent-length: 15\r\nSpam: True ; 1003.3 / 5.0\r\n\r\nGTUBE,NO_RELAYS", true, 1003.3, 2, false},
		{"ham", "SPAMD/1.1 0 EX_OK\r\nContent-length: 21\r\nSpam: False ; -0.0 / 5.0\r\n\r\nNO_RECEIVED,NO_RELAYS", false, 0, 2, false},
		{"no on report_ifspam", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; 1.0 / 5.0\r\n\r\n", false, 1, 0, false},
		{"error code", "SPAMD/1.0 76 Bad header line: BOGUS\r\n", false, 0, 0, true},
		{"no spam header", "SPAMD/1.1 0 EX_OK\r\n\r\n", false, 0, 0, true},
		{"bad score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n", false, 0, 0, true},
		{"truncated", "SPAMD/1.1 0 EX_OK\r\nSpam: Tr", false, 0, 0, true},
		{"not spamd", "HTTP/1.0 200 OK\r\n", false, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := ReadSpamdReply(bufio.NewReader(strings.NewReader(c.in)))
			if (err != nil) != c.err || (!c.err && (res.Spam != c.spam || res.Score != c.score || len(res.Symbols) != c.syms)) {
				t.Errorf("ReadSpamdReply(%q) = %+v, %v", c.in, res, err)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]string{":spam:quarantine", "example.com:spam:reject", ".example.org:virus:quarantine", "example.net:fail:pass"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		rcpt, class string
		want        Action
	}{
		{"u@example.com", ClassSpam, Reject},
		{"u@EXAMPLE.COM", ClassSpam, Reject},
		{"u@other.example", ClassSpam, Quarantine},
		{"u@a.b.example.org", ClassVirus, Quarantine},
		{"u@example.org", ClassVirus, Reject},
		{"u@example.net", ClassFail, Pass},
		{"u@example.com", ClassFail, Tempfail},
		{"postmaster", ClassBanned, Reject},
	}
	for _, c := range cases {
		if got := p.Action(c.rcpt, c.class); got != c.want {
			t.Errorf("Action(%q, %q) = %v, want %v", c.rcpt, c.class, got, c.want)
		}
	}
	acts := p.Decide([]string{"a@example.com", "b@x.example"}, []string{ClassSpam, ClassBadMIME})
	if acts[0] != Reject || acts[1] != Quarantine {
		t.Errorf("Decide = %v", acts)
	}
	for _, bad := range []string{"x", "a:b:c", ":virus:maybe", ":spam:tempfail", ":fail:reject", "::"} {
		if _, err := ParsePolicy([]string{bad}); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
}

func TestRewrite(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"strip and keep body", "X-Spam-Flag: YES\nSubject: s\nX-Virus-Scanned: x\n y\n\nX-Spam-Flag: body\n", "A: 1\nSubject: s\n\nX-Spam-Flag: body\n"},
		{"case", "x-SPAM-status: no\nx-gw-scanned: v=1\nTo: t\n\nb", "A: 1\nTo: t\n\nb"},
		{"no body", "Subject: s\n", "A: 1\nSubject: s\n"},
		{"no header", "\nbody\n", "A: 1\n\nbody\n"},
		{"not a field", "From someone\nX-Spam-Flag: YES\n", "A: 1\nFrom someone\nX-Spam-Flag: YES\n"},
		{"crlf blank", "X-Spam-Flag: YES\nS: 1\r\n\r\nX-Spam-Flag: b\n", "A: 1\nS: 1\r\n\r\nX-Spam-Flag: b\n"},
		{"long field", "X-Spam-Report: " + strings.Repeat("z", 200000) + "\nS: 1\n\nb", "A: 1\nS: 1\n\nb"},
		{"empty", "", "A: 1\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Rewrite(&out, strings.NewReader(c.in), []string{"A: 1\n"}); err != nil {
				t.Fatal(err)
			}
			if out.String() != c.want {
				t.Errorf("Rewrite(%.60q) = %.80q, want %.80q", c.in, out.String(), c.want)
			}
		})
	}
}

func TestTrust(t *testing.T) {
	tr := &Trust{Secret: []byte("0123456789abcdef"), Host: "gw"}
	msg := "Subject: s\nContent-Type: text/plain\n\nbody\n"
	h, err := tr.Header(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, msg string
		want      bool
	}{
		{"signed", h + msg, true},
		{"received added", "Received: by x\n" + h + "Subject: other\n" + strings.TrimPrefix(msg, "Subject: s\n"), true},
		{"body changed", h + msg + "more\n", false},
		{"content type changed", h + "Subject: s\nContent-Type: application/x-msdownload\n\nbody\n", false},
		{"no token", msg, false},
		{"other secret", strings.Replace(h, "mac=", "mac=00", 1) + msg, false},
	}
	for _, c := range cases {
		if got := tr.Verify(strings.NewReader(c.msg)); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestHeadersSayWhatWasNotScanned: X-Virus-Scanned claims a scan only when
// clamd answered; a message clamd or spamd never saw says why.
func TestHeadersSayWhatWasNotScanned(t *testing.T) {
	s := &Scanner{
		Clamd:    &Clamd{MaxStream: 1000},
		Spamd:    &Spamd{MaxSize: 500},
		MIME:     testRules(),
		Hostname: "gw.test",
	}
	down := errors.New("connection refused")
	cases := []struct {
		name string
		rep  Report
		want []string
	}{
		{"both answered", Report{Size: 100, Clamd: &ClamdResult{}, Spam: &SpamResult{Threshold: 5}},
			[]string{"X-Virus-Scanned: gw-scan at gw.test\n", "X-Spam-Status: No, score=0.0 required=5.0 tests=none\n", "X-Spam-Score: 0.0\n", "X-Spam-Level: \n"}},
		{"over both limits", Report{Size: 2000, ClamdErr: ErrTooBig, SpamErr: ErrTooBig},
			[]string{"X-Virus-Scanned: no (2000 bytes over clamdmaxbytes 1000; MIME rules only) gw-scan at gw.test\n",
				"X-Spam-Status: unchecked (2000 bytes over spamdmaxbytes 500) gw-scan at gw.test\n"}},
		{"over spamd's only", Report{Size: 700, Clamd: &ClamdResult{}, SpamErr: ErrTooBig},
			[]string{"X-Virus-Scanned: gw-scan at gw.test\n", "X-Spam-Status: unchecked (700 bytes over spamdmaxbytes 500) gw-scan at gw.test\n"}},
		{"both down", Report{Size: 100, ClamdErr: down, SpamErr: down},
			[]string{"X-Virus-Scanned: no (clamd unavailable; MIME rules only) gw-scan at gw.test\n",
				"X-Spam-Status: unchecked (spamd unavailable) gw-scan at gw.test\n", "X-GW-Alert: unscanned (scanner unavailable)\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.Headers(&c.rep, Pass)
			if strings.Join(got, "") != strings.Join(c.want, "") {
				t.Errorf("Headers =\n%s\nwant\n%s", strings.Join(got, ""), strings.Join(c.want, ""))
			}
		})
	}
	if got := (&Scanner{Hostname: "gw.test"}).Headers(&Report{}, Pass); len(got) != 0 {
		t.Errorf("no engine configured: %q", got)
	}
}
