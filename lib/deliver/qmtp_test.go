package deliver

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"gw/lib/dsn"
	"gw/lib/qmtp"
	"gw/lib/route"
)

// qmtpReceiver answers every package on loopback with K for each
// recipient, and sends the recipient lists it read on a channel.
func qmtpReceiver(t *testing.T) (route.Host, chan []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	lists := make(chan []string, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, _, err := qmtp.ReadString(br, 1<<20, 1<<20); err != nil { // the message
						return
					}
					if _, _, err := qmtp.ReadString(br, 1000, 1000); err != nil { // the sender
						return
					}
					list, _, err := qmtp.ReadString(br, 1<<20, 1<<20)
					if err != nil {
						return
					}
					var rcpts []string
					lr := bufio.NewReader(strings.NewReader(string(list)))
					for {
						r, _, err := qmtp.ReadString(lr, 1000, 1000)
						if err != nil {
							break
						}
						rcpts = append(rcpts, string(r))
					}
					lists <- rcpts
					for range rcpts {
						io.WriteString(c, string(qmtp.Append(nil, "Kok")))
					}
				}
			}()
		}
	}()
	a := netip.MustParseAddrPort(l.Addr().String())
	return route.Host{Name: "qmtp", Addr: a.Addr(), Port: int(a.Port())}, lists
}

// TestQMTPUnwritableRecipients: over QMTP the addresses go raw, after the
// same check as SMTP's: a recipient no path can carry fails alone and is
// left out of the package; a sender such fails the message at Start.
func TestQMTPUnwritableRecipients(t *testing.T) {
	h, lists := qmtpReceiver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := DialQMTP(ctx, h, Config{ConnectTimeout: time.Second, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Start("s@gw.test> SIZE=1", 2, false, dsn.Mail{}); !Permanent(err) {
		t.Errorf("Start with parameters in the sender's domain: %v", err)
	}
	d, err := s.Start("s@gw.test", 2, false, dsn.Mail{})
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"a b@gw.test", "x\x1bc@gw.test", "y@gw.test> NOTIFY=NEVER", "ok@gw.test"}
	for _, r := range rcpts {
		d.AddRcpt(r, dsn.Rcpt{})
	}
	if err := d.Body(strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	res, err := d.Commit()
	if err != nil || len(res) != 4 || res[0] != nil || !Permanent(res[1]) || !Permanent(res[2]) || res[3] != nil {
		t.Fatalf("outcomes %v, %v", res, err)
	}
	if got := <-lists; !reflect.DeepEqual(got, []string{"a b@gw.test", "ok@gw.test"}) {
		t.Errorf("the package carried %q", got)
	}
	// Every recipient refused: no package goes out at all.
	d, _ = s.Start("s@gw.test", 2, false, dsn.Mail{})
	d.AddRcpt("x\x1bc@gw.test", dsn.Rcpt{})
	d.Body(strings.NewReader("x\n"))
	if res, err := d.Commit(); err != nil || len(res) != 1 || !Permanent(res[0]) {
		t.Errorf("all refused: %v, %v", res, err)
	}
	select {
	case got := <-lists:
		t.Errorf("a package went out with %q", got)
	case <-time.After(100 * time.Millisecond):
	}
}
