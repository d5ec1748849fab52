package sessiontest

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is the session's connection: the script on one side, the
// transcript on the other. Each Read gives at most one line, so the core
// flushes its replies before it reads the next command: every reply is
// written before the explanations of the command after it, as a client
// that waits for each reply would see them. A line that ends in LF alone
// (a script typed by hand) is passed on ending in CRLF, as a client sends
// it.
type Conn struct {
	in  *bufio.Reader
	out io.Writer
	mu  *sync.Mutex // shared with the explanations written between replies
	buf []byte      // the rest of the line under way
	cr  bool        // the piece before ended in CR (a line longer than the reader's buffer)
}

// NewConn reads the script from in and writes replies to out, holding mu
// for each write.
func NewConn(in io.Reader, out io.Writer, mu *sync.Mutex) *Conn {
	return &Conn{in: bufio.NewReader(in), out: out, mu: mu}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		line, err := c.in.ReadSlice('\n')
		if len(line) == 0 {
			if err == bufio.ErrBufferFull {
				err = nil
			}
			return 0, err
		}
		c.buf = append(c.buf[:0], line...)
		n := len(c.buf)
		if c.buf[n-1] == '\n' && (n == 1 && !c.cr || n > 1 && c.buf[n-2] != '\r') {
			c.buf = append(c.buf[:n-1], '\r', '\n')
		}
		c.cr = line[len(line)-1] == '\r'
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

// Close ends the transcript; the script is the caller's to close.
func (c *Conn) Close() error { return nil }

// A script has no deadlines: an admin may type it.
func (c *Conn) SetDeadline(time.Time) error      { return nil }
func (c *Conn) SetReadDeadline(time.Time) error  { return nil }
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

func (c *Conn) LocalAddr() net.Addr  { return scriptAddr{} }
func (c *Conn) RemoteAddr() net.Addr { return scriptAddr{} }

type scriptAddr struct{}

func (scriptAddr) Network() string { return "script" }
func (scriptAddr) String() string  { return "script" }
