package qmtp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gw/lib/tcpserver"
)

// FuzzReadString: any input reads as a netstring within its bounds or
// fails; a netstring read back from Append is what was written.
func FuzzReadString(f *testing.F) {
	for _, s := range []string{"0:,", "12:hello world!,", "3:abc;", "012:x,", "9223372036854775808:", "5:ab", "1001:" + strings.Repeat("a", 1001) + ","} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, long, err := ReadString(bufio.NewReader(bytes.NewReader(in)), 100, 2000)
		if err == nil && !long {
			if len(s) > 100 {
				t.Fatalf("read %d bytes, bound 100", len(s))
			}
			if got := Append(nil, string(s)); !bytes.HasPrefix(in, got) {
				t.Fatalf("%q read as %q", in, s)
			}
		}
	})
}

// fuzzConn is a connection whose client sends in and then closes.
type fuzzConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSession runs a server session on any input. Whatever it is, every
// K response stands for a recipient of a queued message and every
// recipient of a queued message got a K: nothing is queued unanswered and
// nothing answered K is missing.
func FuzzSession(f *testing.F) {
	for _, s := range []string{spec61, spec62, spec61 + spec62, "2:\na,0:,5:2:x@,,2:xa,", "0:,", "9223372036854775808:",
		"2:\na,0:,4:2:x@,,", "2:\na,1000:" + strings.Repeat("s", 1000) + ",5:2:x@,,"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, relayClient bool) {
		inj := &recordingInjector{}
		c := &fuzzConn{r: bytes.NewReader(in)}
		cfg := testConfig()
		cfg.Databytes = 64
		Serve(c, cfg, tcpserver.Client{RemoteIP: "127.0.0.1", Relay: relayClient, Injector: inj})
		ks := 0
		br := bufio.NewReader(&c.out)
		for {
			s, _, err := ReadString(br, MaxResponse, MaxResponse)
			if err != nil {
				break
			}
			if len(s) == 0 || !bytes.ContainsRune([]byte("KZD"), rune(s[0])) {
				t.Fatalf("response %q", s)
			}
			if s[0] == 'K' {
				ks++
			}
		}
		queued := 0
		for _, m := range inj.messages() {
			queued += len(m.env.Recipients)
		}
		if ks != queued {
			t.Fatalf("%d K responses, %d recipients queued; input %q", ks, queued, in)
		}
	})
}

// FuzzClientResponses feeds a client any bytes as the server's answers to
// two pipelined packages: each package ends with its responses or an
// error, never a hang or a panic.
func FuzzClientResponses(f *testing.F) {
	for _, s := range []string{"22:Kok 1795750568 qp 4711,22:Kok 1795750568 qp 4711,3:Zno,", "2:Xx,", "0:,", "99999999999:", "3:Kok,3:Kok,3:Dno"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, resp []byte) {
		a, b := net.Pipe()
		q := NewConn(a, time.Second)
		go func() {
			io.Copy(io.Discard, b)
		}()
		go func() {
			b.Write(resp)
			b.Close()
		}()
		p1, err1 := q.Send("s@x", []string{"a@y", "b@y"}, 1, strings.NewReader("x"))
		p2, err2 := q.Send("s@x", []string{"c@y"}, 1, strings.NewReader("x"))
		for i, p := range []*Pending{p1, p2} {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				if p.err == nil && len(p.resp) != p.n {
					t.Fatalf("package %d: %d responses for %d recipients", i, len(p.resp), p.n)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("package %d: no end (send errors %v %v)", i, err1, err2)
			}
		}
		q.Close()
	})
}
