package inject

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
)

// Client sends messages to gw-queued over its unix socket; one Client is
// one connection and carries one message at a time.
type Client struct {
	conn net.Conn
	w    *bufio.Writer
	buf  []byte
}

// Dial connects to the gw-queued socket at path.
func Dial(path string) (*Client, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &Client{conn: c}, nil
}

// Inject sends the message msg with envelope env and returns qmail-queue's
// exit code from the server: 0 only once the message is durable. An error
// means the outcome is unknown: treat it as temporary (qq.ReadError) and
// drop the connection.
func (c *Client) Inject(msg io.Reader, env envelope.Envelope) (int, error) {
	return c.InjectLate(msg, func() envelope.Envelope { return env })
}

// InjectLate is Inject with the envelope asked for only once msg is read
// to its end, for a listener that learns it after the message (QMTP).
func (c *Client) InjectLate(msg io.Reader, env func() envelope.Envelope) (int, error) {
	if c.w == nil { // made on first use: the pool's clients send from memory
		c.w, c.buf = bufio.NewWriterSize(c.conn, 64<<10), make([]byte, 64<<10)
	}
	var hdr [4]byte
	for {
		n, rerr := msg.Read(c.buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			c.w.Write(hdr[:])
			if _, err := c.w.Write(c.buf[:n]); err != nil {
				return 0, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, fmt.Errorf("reading the message: %w", rerr)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	c.w.Write(hdr[:])
	c.w.Write(env().Wire())
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	var code [1]byte
	if _, err := io.ReadFull(c.conn, code[:]); err != nil {
		return 0, fmt.Errorf("no reply from the injector: %w", err)
	}
	return int(code[0]), nil
}

// InjectBytes is Inject for a message held whole in memory: the chunk,
// the end and the envelope go out in one writev, with no copy.
func (c *Client) InjectBytes(msg []byte, env envelope.Envelope) (int, error) {
	return c.End(msg, env)
}

// MaxChunk is the largest chunk a client sends (the server takes up to
// maxSocketChunk).
const MaxChunk = 256 << 10

// WriteChunk sends p as chunks of the message under way, with no copy;
// a message is WriteChunk… then End. Empty p sends nothing (a zero-length
// chunk would end the message).
func (c *Client) WriteChunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bufs := make(net.Buffers, 0, 2*(len(p)/MaxChunk+1))
	bufs = appendChunks(bufs, p)
	_, err := bufs.WriteTo(c.conn)
	return err
}

// End sends last as the message's final chunks, the end of the message
// and env's wire form, in one writev, and returns qmail-queue's exit code
// from the server (see Inject for an error).
func (c *Client) End(last []byte, env envelope.Envelope) (int, error) {
	bufs := make(net.Buffers, 0, 2*(len(last)/MaxChunk+1)+2)
	bufs = appendChunks(bufs, last)
	bufs = append(bufs, []byte{0, 0, 0, 0}, env.Wire())
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return 0, err
	}
	var code [1]byte
	if _, err := io.ReadFull(c.conn, code[:]); err != nil {
		return 0, fmt.Errorf("no reply from the injector: %w", err)
	}
	return int(code[0]), nil
}

// appendChunks adds p to bufs as chunks of at most MaxChunk bytes, each
// after its length.
func appendChunks(bufs net.Buffers, p []byte) net.Buffers {
	for len(p) > 0 {
		n := min(len(p), MaxChunk)
		bufs = append(bufs, binary.BigEndian.AppendUint32(nil, uint32(n)), p[:n])
		p = p[n:]
	}
	return bufs
}

// Stale reports, without waiting, whether the server closed the
// connection (or sent bytes nobody asked for) while it sat idle: a
// connection kept open across a restart of gw-queued.
func (c *Client) Stale() bool {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	stale := false
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		stale = n > 0 || err == nil || err != unix.EAGAIN // n == 0 and no error: end of file
		return true
	})
	return stale
}

// Close closes the connection; a message under way is aborted.
func (c *Client) Close() error { return c.conn.Close() }
