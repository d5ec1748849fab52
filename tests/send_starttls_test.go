package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsTrap is an SMTP server on loopback that offers STARTTLS and then
// spoils it as a test chooses, to see what gw-send makes of it:
//
//	inject     answers STARTTLS with "220 go ahead" and an injected
//	           "250 injected" in the same write, then reads nothing
//	handshake  answers "220 go ahead" and fails the handshake (it has
//	           no certificate)
//
// In the clear it takes MAIL with mail (its reply), every RCPT with 250,
// and keeps each message it is given.
type tlsTrap struct {
	port int
	mode string
	mail string

	mu       sync.Mutex
	conns    int
	commands []string // every command line, each prefixed by its connection's number
	messages []string
}

func startTLSTrap(t *testing.T, mode, mail string) *tlsTrap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tr := &tlsTrap{port: l.Addr().(*net.TCPAddr).Port, mode: mode, mail: mail}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.conns++
			n := tr.conns
			tr.mu.Unlock()
			go tr.serve(c, n)
		}
	}()
	return tr
}

func (tr *tlsTrap) serve(c net.Conn, n int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) { c.Write([]byte(s)) }
	say("220 trap.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		tr.mu.Lock()
		tr.commands = append(tr.commands, fmt.Sprintf("%d %s", n, cmd))
		tr.mu.Unlock()
		switch verb := strings.ToUpper(strings.Fields(cmd + " x")[0]); verb {
		case "EHLO":
			say("250-trap.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
		case "STARTTLS":
			if tr.mode == "inject" {
				say("220 go ahead\r\n250 injected\r\n")
				r.ReadString(0) // whatever comes, until the client goes
				return
			}
			say("220 go ahead\r\n")
			tls.Server(c, &tls.Config{Certificates: []tls.Certificate{{}}}).Handshake()
			return
		case "MAIL":
			say(tr.mail + "\r\n")
		case "RCPT":
			say("250 ok\r\n")
		case "DATA":
			say("354 go on\r\n")
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
			tr.mu.Lock()
			tr.messages = append(tr.messages, b.String())
			tr.mu.Unlock()
			say("250 ok queued\r\n")
		case "QUIT":
			say("221 bye\r\n")
			return
		default:
			say("250 ok\r\n")
		}
	}
}

func (tr *tlsTrap) got() (commands, messages []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.commands...), append([]string(nil), tr.messages...)
}

// TestSendSTARTTLSInjection: the remote answers STARTTLS with its 220 and,
// in the same write, a reply nobody asked for: the mark of a response
// injection. gw-send does not hand those bytes to a TLS handshake: it
// drops the connection, logs the TLS failure with host, stage and reason,
// and delivers in the clear over a new connection (opportunistic TLS, as
// Postfix's "may" level), once; the log says tls=no.
func TestSendSTARTTLSInjection(t *testing.T) {
	tr := startTLSTrap(t, "inject", "250 ok")
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d", tr.port)})
	in.start(t)
	id := in.inject(t, "a@src.test", []string{"b@dst.test"}, "Subject: tls\n\nbody\n")
	waitFor(t, "the delivery", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=delivered")) == 1
	})
	fails := in.lines("tls_failed", "qid="+id, "stage=starttls")
	if len(fails) != 1 || !strings.Contains(fails[0], fmt.Sprintf("host=127.0.0.1[127.0.0.1]:%d ", tr.port)) ||
		!strings.Contains(fails[0], "sent 14 bytes after its 220 reply, before the TLS handshake") {
		t.Fatalf("tls_failed lines %q, want one naming host, stage and reason", fails)
	}
	if l := in.lines("delivery", "qid="+id, "tls=no"); len(l) != 1 {
		t.Errorf("delivery not logged as in the clear: %q", in.lines("delivery"))
	}
	cmds, msgs := tr.got()
	want := []string{"1 EHLO gw.test", "1 STARTTLS", "2 EHLO gw.test", "2 MAIL FROM:<a@src.test> BODY=8BITMIME"}
	if len(cmds) < len(want) || strings.Join(cmds[:len(want)], "|") != strings.Join(want, "|") {
		t.Errorf("dialogue %q, want it to begin %q", cmds, want)
	}
	if len(msgs) != 1 || !strings.HasSuffix(msgs[0], "Subject: tls\r\n\r\nbody\r\n") {
		t.Errorf("messages received %q, want the one, once", msgs)
	}
}

// TestSendSTARTTLSFailureLastError: the remote's handshake fails, and in
// the clear it defers the message at MAIL. The failed handshake is logged,
// and the recipient's last error, as gw-qstat lists it, says both: the
// remote's 451, and that it came in the clear because TLS failed.
func TestSendSTARTTLSFailureLastError(t *testing.T) {
	tr := startTLSTrap(t, "handshake", "451 4.7.1 greylisted")
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d", tr.port)})
	in.start(t)
	id := in.inject(t, "a@src.test", []string{"b@dst.test"}, "Subject: tls\n\nbody\n")
	waitFor(t, "the deferral", 10*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	if l := in.lines("tls_failed", "qid="+id, "stage=handshake"); len(l) != 1 {
		t.Fatalf("tls_failed lines %q, want one at stage handshake", in.lines("tls_failed"))
	}
	out, _ := qstatRun(t, nil, 0, "--queue", in.queue, "list")
	for _, want := range []string{"451 4.7.1 greylisted", "in the clear: TLS failed at handshake: "} {
		if !strings.Contains(out, want) {
			t.Errorf("gw-qstat list lacks %q:\n%s", want, out)
		}
	}
	if _, msgs := tr.got(); len(msgs) != 0 {
		t.Errorf("messages received %q", msgs)
	}
}
