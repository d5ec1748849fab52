package dnstest

import (
	"net"
	"syscall"
	"testing"
)

// TestStartRetriesATakenTCPPort: when the TCP side of the port the kernel
// gave UDP is taken, Start tries another port instead of failing.
func TestStartRetriesATakenTCPPort(t *testing.T) {
	var tried []string
	listenTCP = func(network, addr string) (net.Listener, error) {
		tried = append(tried, addr)
		if len(tried) <= 3 {
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRINUSE}
		}
		return net.Listen(network, addr)
	}
	defer func() { listenTCP = net.Listen }()
	s := Start(t)
	if len(tried) != 4 || s.Addr != tried[3] {
		t.Fatalf("tried %v, serving at %s: want 4 tries and the last one's port", tried, s.Addr)
	}
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("no TCP at %s: %v", s.Addr, err)
	}
	c.Close()
}
