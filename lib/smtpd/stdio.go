package smtpd

import (
	"net"
	"os"
	"time"
)

// StdioConn returns the connection a launcher such as tcpserver handed
// over on fds 0 and 1: the socket itself when fd 0 is one, else the two
// descriptors as one connection (pipes, in tests or behind sslserver-style
// launchers).
func StdioConn() net.Conn {
	if c, err := net.FileConn(os.Stdin); err == nil {
		return c
	}
	return &stdioConn{in: os.Stdin, out: os.Stdout}
}

type stdioConn struct{ in, out *os.File }

func (c *stdioConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *stdioConn) Close() error {
	c.in.Close()
	return c.out.Close()
}
func (c *stdioConn) LocalAddr() net.Addr                { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr               { return stdioAddr{} }
func (c *stdioConn) SetDeadline(t time.Time) error      { c.in.SetDeadline(t); return c.out.SetDeadline(t) }
func (c *stdioConn) SetReadDeadline(t time.Time) error  { return c.in.SetReadDeadline(t) }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return c.out.SetWriteDeadline(t) }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }
