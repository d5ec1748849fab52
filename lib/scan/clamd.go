package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Clamd is a clamd reached over TCP ("host:port") or a unix socket (a path
// beginning with '/', or "unix:PATH"). Each scan is one zINSTREAM
// (clamd(8)), on a connection of its own or, with Sessions, on one kept
// open in clamd's session mode; the deadline covers the whole exchange.
type Clamd struct {
	Addr    string
	Timeout time.Duration
	// MaxStream is the most bytes sent; clamd's StreamMaxLength must not be
	// lower, or clamd answers "size limit exceeded" (an error here).
	MaxStream int64
	// Sessions keeps connections open between scans (IDSESSION): a
	// long-running proxy saves a connect, clamd's accept and a close a
	// message. A process that scans once (the wrapper) leaves it off.
	Sessions bool

	idle idlePool[*clamdSession]
}

// ClamdResult is clamd's answer about one stream.
type ClamdResult struct {
	Infected bool
	Name     string // the signature, when infected
}

// chunkSize is the INSTREAM chunk: scanners.md §4 suggests 64 KiB.
const chunkSize = 64 << 10

// maxClamdReply bounds clamd's one-line reply.
const maxClamdReply = 4096

// ErrTooBig reports a message over a scanner's size limit: it was not sent.
var ErrTooBig = errTooBig{}

type errTooBig struct{}

func (errTooBig) Error() string { return "message larger than the scanner's limit" }

// dial connects to a scanner address: a unix socket path or host:port.
// TCP keep-alive is off: an exchange is bounded by its deadline, and
// turning it on costs four setsockopt calls a connection (spamd's is one
// a message).
func dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	network := "tcp"
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	return d.DialContext(ctx, network, addr)
}

// Scan sends size bytes of r to clamd and returns its verdict. A clamd
// that cannot be reached, times out, or answers ERROR is an error, never
// clean.
func (c *Clamd) Scan(ctx context.Context, r io.Reader, size int64) (ClamdResult, error) {
	if c.MaxStream > 0 && size > c.MaxStream {
		return ClamdResult{}, ErrTooBig
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if c.Sessions {
		return c.scanInSession(ctx, r, size)
	}
	conn, err := dial(ctx, c.Addr)
	if err != nil {
		return ClamdResult{}, fmt.Errorf("clamd %s: %w", c.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	res, err := instream(conn, r, size)
	if err != nil {
		return res, fmt.Errorf("clamd %s: %w", c.Addr, err)
	}
	return res, nil
}

// instream runs one zINSTREAM exchange on conn and reads its reply.
func instream(conn net.Conn, r io.Reader, size int64) (ClamdResult, error) {
	werr, err := writeInstream(conn, "zINSTREAM\x00", r, size)
	if err != nil {
		return ClamdResult{}, err
	}
	return readClamdReply(conn, werr)
}

// writeInstream writes head (zINSTREAM, after zIDSESSION on a session's
// first request), then the message in chunks of at most chunkSize bytes,
// each behind a 4-byte big-endian length, then a zero length. A write
// error comes back as werr (clamd closes early on its size limit, and
// its reply says why), an error reading the message as err. The buffers
// fit a message of size bytes smaller than a chunk: what a message
// allocates is what the collector has to sweep, and 10 KiB of mail does
// not need 128.
func writeInstream(conn net.Conn, head string, r io.Reader, size int64) (werr, err error) {
	chunk := int(min(max(size, 0)+1, chunkSize))
	w := bufio.NewWriterSize(conn, len(head)+4+chunk+4)
	w.WriteString(head)
	buf := make([]byte, 4+chunk)
	for {
		n, err := io.ReadFull(r, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, werr := w.Write(buf[:4+n]); werr != nil {
				return werr, nil
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
	}
	w.Write([]byte{0, 0, 0, 0})
	return w.Flush(), nil
}

func readClamdReply(conn net.Conn, werr error) (ClamdResult, error) {
	br := bufio.NewReaderSize(io.LimitReader(conn, maxClamdReply), 512)
	line, err := br.ReadString(0)
	if err != nil && line == "" {
		if werr != nil {
			return ClamdResult{}, werr
		}
		return ClamdResult{}, fmt.Errorf("reading the reply: %w", err)
	}
	return ParseClamdReply(line)
}

// ParseClamdReply reads one INSTREAM reply, its NUL or LF terminator
// optional: "stream: OK", "stream: NAME FOUND" or "TEXT ERROR".
func ParseClamdReply(line string) (ClamdResult, error) {
	line = strings.TrimRight(line, "\x00\n")
	// Inside IDSESSION a reply carries "N: " first; INSTREAM alone does not.
	rest, ok := strings.CutPrefix(line, "stream: ")
	switch {
	case ok && rest == "OK":
		return ClamdResult{}, nil
	case ok && strings.HasSuffix(rest, " FOUND"):
		name := strings.TrimSuffix(rest, " FOUND")
		if name == "" {
			return ClamdResult{}, fmt.Errorf("reply %q names no signature", line)
		}
		return ClamdResult{Infected: true, Name: name}, nil
	case strings.HasSuffix(line, " ERROR"):
		return ClamdResult{}, fmt.Errorf("clamd error: %s", strings.TrimSuffix(line, " ERROR"))
	}
	return ClamdResult{}, fmt.Errorf("unexpected reply %q", truncate(line, 200))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
