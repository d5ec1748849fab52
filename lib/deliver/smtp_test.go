package deliver

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gw/lib/route"
)

// scriptedServer answers an SMTP or LMTP client on loopback from a
// function of the command line; the DATA body is collected whole.
func scriptedServer(t *testing.T, ehlo string, answer func(cmd string) string, lmtpReplies []string) (route.Host, chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	bodies := make(chan string, 4)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 test ESMTP\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.TrimRight(line, "\r\n")
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "EHLO"), strings.HasPrefix(up, "LHLO"):
				c.Write([]byte(ehlo))
			case up == "DATA":
				c.Write([]byte("354 go\r\n"))
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
				bodies <- b.String()
				if lmtpReplies != nil {
					for _, rp := range lmtpReplies {
						c.Write([]byte(rp + "\r\n"))
					}
				} else {
					c.Write([]byte(answer("END") + "\r\n"))
				}
			case up == "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				c.Write([]byte(answer(cmd) + "\r\n"))
			}
		}
	}()
	a := netip.MustParseAddrPort(l.Addr().String())
	return route.Host{Name: "test", Addr: a.Addr(), Port: int(a.Port())}, bodies
}

func TestSMTPPerRecipient(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		ehlo := "250-test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
		if pipe {
			ehlo = "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
		}
		var cmds []string
		h, bodies := scriptedServer(t, ehlo, func(cmd string) string {
			cmds = append(cmds, cmd)
			switch {
			case strings.Contains(cmd, "bad@"):
				return "550 5.1.1 no such user"
			case strings.Contains(cmd, "later@"):
				return "451 4.2.0 try later"
			}
			return "250 ok"
		}, nil)
		s, err := Dial(context.Background(), h, Config{Helo: "gw.test", Timeout: 5 * time.Second, ConnectTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Start("a@x.test", 10, false)
		if err != nil {
			t.Fatal(err)
		}
		var early []error
		for _, rc := range []string{"good@y.test", "bad@y.test", "later@y.test"} {
			early = append(early, d.AddRcpt(rc))
		}
		if err := d.Body(strings.NewReader("Subject: t\n\n.dot\n")); err != nil {
			t.Fatal(err)
		}
		res, err := d.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if res[0] != nil || !Permanent(res[1]) || res[2] == nil || Permanent(res[2]) {
			t.Errorf("pipe=%v: outcomes %v (early %v)", pipe, res, early)
		}
		if got := <-bodies; got != "Subject: t\r\n\r\n..dot\r\n" {
			t.Errorf("pipe=%v: body %q", pipe, got)
		}
		s.Close()
		if !pipe && !strings.Contains(cmds[0], "SIZE=10") {
			t.Errorf("MAIL without SIZE: %q", cmds[0])
		}
	}
}

func TestLMTPPerRecipient(t *testing.T) {
	h, _ := scriptedServer(t, "250-test\r\n250 PIPELINING\r\n", func(cmd string) string {
		if strings.Contains(cmd, "gone@") {
			return "550 5.1.1 gone"
		}
		return "250 ok"
	}, []string{"250 2.0.0 a ok", "452 4.2.2 b over quota"})
	s, err := Dial(context.Background(), h, Config{Helo: "gw.test", Timeout: 5 * time.Second, LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, _ := s.Start("", 0, false)
	for _, rc := range []string{"a@y.test", "gone@y.test", "b@y.test"} {
		d.AddRcpt(rc)
	}
	if err := d.Body(strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || !Permanent(res[1]) || res[2] == nil || Permanent(res[2]) {
		t.Errorf("outcomes %v", res)
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

// TestSMTPPipelinedAllRefusedAndReuse: with PIPELINING, DATA ends the
// envelope group; when every RCPT is refused no body goes out, even to a
// server that says 354 all the same, and the session carries the next
// message.
func TestSMTPPipelinedAllRefusedAndReuse(t *testing.T) {
	var cmds []string
	h, bodies := scriptedServer(t, "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", func(cmd string) string {
		cmds = append(cmds, cmd)
		if strings.Contains(cmd, "<bad") {
			return "550 5.1.1 no such user"
		}
		return "250 ok"
	}, nil)
	s, err := Dial(context.Background(), h, Config{Helo: "gw.test", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, _ := s.Start("a@x.test", 0, false)
	d.AddRcpt("bad@y.test")
	d.AddRcpt("bad2@y.test")
	if err := d.Body(strings.NewReader("never sent\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil || len(res) != 2 || !Permanent(res[0]) || !Permanent(res[1]) {
		t.Fatalf("all refused: %v, %v", res, err)
	}
	if got := <-bodies; got != "" {
		t.Errorf("a body went out after every RCPT was refused: %q", got)
	}
	if dd, ok := d.(interface{ DataSent() bool }); !ok || dd.DataSent() {
		t.Errorf("DataSent after no body")
	}
	if !s.Reusable() {
		t.Fatal("session not reusable after a refused transaction")
	}
	d, err = s.Start("a@x.test", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	d.AddRcpt("good@y.test")
	if err := d.Body(strings.NewReader("second\n")); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Commit(); err != nil || res[0] != nil {
		t.Fatalf("second message: %v, %v", res, err)
	}
	if got := <-bodies; got != "second\r\n" {
		t.Errorf("second body %q", got)
	}
	if !strings.Contains(cmds[0], "BODY=8BITMIME") {
		t.Errorf("MAIL without BODY=8BITMIME to a server offering it: %q", cmds[0])
	}
}
