package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sessionClamd is a clamd in session mode that answers each zINSTREAM of
// a connection with the next of replies (a clamd out of step, which the
// real one cannot be made to be), and counts the connections it took.
func sessionClamd(t *testing.T, replies ...string) (addr string, accepted *atomic.Int32) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if cmd, _ := r.ReadString(0); cmd != "zIDSESSION\x00" {
					return
				}
				for _, reply := range replies {
					if cmd, _ := r.ReadString(0); cmd != "zINSTREAM\x00" {
						return
					}
					for {
						var n uint32
						if binary.Read(r, binary.BigEndian, &n) != nil {
							return
						}
						if n == 0 {
							break
						}
						io.CopyN(io.Discard, r, int64(n))
					}
					c.Write([]byte(reply))
				}
			}()
		}
	}()
	return l.Addr().String(), accepted
}

// TestClamdSession: scans go one after another on one connection, each
// reply read as its request's; a reply numbered for another request is
// an error (the session is out of step) and the session is dropped, the
// next scan opening a new one.
func TestClamdSession(t *testing.T) {
	addr, accepted := sessionClamd(t, "1: stream: OK\x00", "2: stream: X FOUND\x00", "2: stream: OK\x00")
	c := &Clamd{Addr: addr, Timeout: 5 * time.Second, Sessions: true}
	scan := func() (ClamdResult, error) {
		return c.Scan(context.Background(), strings.NewReader("message\n"), 8)
	}
	if res, err := scan(); err != nil || res.Infected {
		t.Fatalf("first scan: %+v, %v", res, err)
	}
	if res, err := scan(); err != nil || !res.Infected || res.Name != "X" {
		t.Fatalf("second scan: %+v, %v", res, err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections for two scans, want 1", n)
	}
	if res, err := scan(); err == nil || !strings.Contains(err.Error(), "not to request 3") {
		t.Fatalf("reply to request 2 for the third scan: %+v, %v; want an error", res, err)
	}
	if res, err := scan(); err != nil || res.Infected {
		t.Fatalf("scan after the dropped session: %+v, %v", res, err)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the out-of-step session dropped)", n)
	}
}
