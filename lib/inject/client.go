package inject

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
	"gw/lib/qq"
)

// Client sends messages to gw-queued over its unix socket; one Client is
// one connection and carries one message at a time.
type Client struct {
	conn    net.Conn
	w       *bufio.Writer
	buf     []byte
	version byte // the protocol version the server agreed to
	// outOfStep: the server sent bytes past a reply; the connection
	// carries no further message (Stale).
	outOfStep bool
	replyBuf  [maxReply]byte
	session   []byte // the session frame to send before the next message
}

// Session names the listener session the next message comes from, for
// gw-queued's log (version 3). A server of an older version is not told,
// nor is a sid that is not plain (PlainQID): the label is dropped, the
// message goes all the same.
func (c *Client) Session(sid string) {
	c.session = nil
	if c.version >= Version3 {
		c.session = sessionFrame(sid)
	}
}

// takeSession returns the pending session frame, once.
func (c *Client) takeSession() []byte {
	f := c.session
	c.session = nil
	return f
}

// helloWait bounds the wait for the server's answer to a hello: a server
// that accepted the connection answers at once.
const helloWait = 10 * time.Second

// Dial connects to the gw-queued socket at path and agrees on the
// protocol's version: the newest both speak. A server of version 1 turns
// the hello away and closes the connection; the client then dials again
// and speaks version 1 (no queue id in the replies).
func Dial(path string) (*Client, error) {
	c, v, err := dialHello(path)
	if err != nil {
		return nil, err
	}
	if v == 0 {
		if c, err = net.Dial("unix", path); err != nil {
			return nil, err
		}
		v = Version1
	}
	// The writer and the read buffer Send streams through are made on
	// first use: the pool's clients send from memory (End).
	return &Client{conn: c, version: v}, nil
}

// dialHello connects and asks for the newest version; v is 0 (and the
// connection closed) when the server does not know the hello.
func dialHello(path string) (conn net.Conn, v byte, err error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(helloWait))
	h := hello(Newest)
	var b [1]byte
	if _, err = c.Write(h[:]); err == nil {
		_, err = io.ReadFull(c, b[:])
	}
	c.SetDeadline(time.Time{})
	switch {
	case err == nil && b[0] >= Version2 && b[0] <= Newest:
		return c, b[0], nil
	case err == nil && int(b[0]) == qq.ReadError, errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		c.Close() // a version 1 server: it refused the hello as a chunk
		return nil, 0, nil
	case err == nil:
		c.Close()
		return nil, 0, fmt.Errorf("gw-queued answered the hello with %d", b[0])
	}
	c.Close()
	return nil, 0, fmt.Errorf("hello: %w", err)
}

// Version returns the protocol version agreed with the server.
func (c *Client) Version() int { return int(c.version) }

// Reply is the server's answer to a message: qmail-queue's exit code, and
// when it is 0 and the server speaks version 2, the queue id the message
// was committed under.
type Reply struct {
	Code int
	QID  string
}

// Inject sends the message msg with envelope env and returns qmail-queue's
// exit code from the server: 0 only once the message is durable. An error
// means the outcome is unknown: treat it as temporary (qq.ReadError) and
// drop the connection.
func (c *Client) Inject(msg io.Reader, env envelope.Envelope) (int, error) {
	r, err := c.Send(msg, func() envelope.Envelope { return env })
	return r.Code, err
}

// Send is Inject with the whole reply, and with the envelope asked for
// only once msg is read to its end, for a listener that learns it after
// the message (QMTP). A queue id that is not one (PlainQID) is dropped:
// the message is queued all the same.
func (c *Client) Send(msg io.Reader, env func() envelope.Envelope) (Reply, error) {
	if c.w == nil { // made on first use: the pool's clients send from memory
		c.w, c.buf = bufio.NewWriterSize(c.conn, 64<<10), make([]byte, 64<<10)
	}
	if f := c.takeSession(); f != nil {
		c.w.Write(f)
	}
	var hdr [4]byte
	for {
		n, rerr := msg.Read(c.buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			c.w.Write(hdr[:])
			if _, err := c.w.Write(c.buf[:n]); err != nil {
				return Reply{}, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Reply{}, fmt.Errorf("reading the message: %w", rerr)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	c.w.Write(hdr[:])
	c.w.Write(env().Wire())
	if err := c.w.Flush(); err != nil {
		return Reply{}, err
	}
	return c.reply()
}

// InjectBytes is Send for a message held whole in memory: the chunks,
// the end and the envelope go out in one writev, with no copy.
func (c *Client) InjectBytes(msg []byte, env envelope.Envelope) (Reply, error) {
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
	bufs := make(net.Buffers, 0, 2*(len(p)/MaxChunk+1)+1)
	if f := c.takeSession(); f != nil {
		bufs = append(bufs, f)
	}
	bufs = appendChunks(bufs, p)
	_, err := bufs.WriteTo(c.conn)
	return err
}

// End sends last as the message's final chunks, the end of the message
// and env's wire form, in one writev, and returns the server's reply, as
// Send does (see Inject for an error).
func (c *Client) End(last []byte, env envelope.Envelope) (Reply, error) {
	bufs := make(net.Buffers, 0, 2*(len(last)/MaxChunk+1)+3)
	if f := c.takeSession(); f != nil {
		bufs = append(bufs, f)
	}
	bufs = appendChunks(bufs, last)
	bufs = append(bufs, []byte{0, 0, 0, 0}, env.Wire())
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return Reply{}, err
	}
	return c.reply()
}

// reply reads the server's answer to a message; a malformed queue id is
// dropped (the message is queued all the same).
func (c *Client) reply() (Reply, error) {
	code, qid, extra, err := readReply(c.conn, c.version, c.replyBuf[:])
	c.outOfStep = c.outOfStep || extra
	if err != nil && !errors.Is(err, errBadQID) {
		return Reply{}, err
	}
	return Reply{Code: code, QID: qid}, nil
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
	if c.outOfStep {
		return true
	}
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

// OutOfStep reports, with no system call, whether the server sent bytes
// past a reply: the connection must carry no further message. Stale
// says the same and more, at the cost of a peek at the socket.
func (c *Client) OutOfStep() bool { return c.outOfStep }

// Close closes the connection; a message under way is aborted.
func (c *Client) Close() error { return c.conn.Close() }
