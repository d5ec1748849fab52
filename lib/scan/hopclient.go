package scan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/dotstuff"
	"gw/lib/envelope"
)

// hopClient is the proxy's SMTP client for its one next hop. go-smtp's
// client waits for the reply to each command; the next hop (gw-smtpd)
// offers PIPELINING, so MAIL, the RCPTs and DATA go in one write and
// their replies are read together (RFC 2920): two round trips a message
// where lock step took three and one a recipient. A next hop that does
// not offer it is spoken to in lock step.
type hopClient struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	ext  map[string]bool // EHLO keywords, upper case
	// dataBuf is the DATA writer's buffer, kept for the next message.
	dataBuf []byte
	// chunk is the message as one BDAT chunk and head the commands
	// before it, kept for the next message.
	chunk chunkWire
	head  []byte
}

// Bounds on what the next hop may answer: it is a sibling, read as if
// from the Internet.
const (
	maxHopReplyLine  = 2000 // bytes of one reply line (RFC 5321: 512)
	maxHopReplyLines = 100
)

// errHopReplyLine is a reply line over maxHopReplyLine or not ending in
// CRLF: the session cannot be trusted to stay in step.
var errHopReplyLine = errors.New("next hop's reply line too long or malformed")

// A connection to the next hop costs the next hop a whole session (accept,
// its client checks, greeting, EHLO): the proxy keeps a few idle between
// messages, as Postfix's smtp client keeps its connection cache. Few and
// short-lived, so the next hop's per-client limits are not held by idle
// sessions.
const (
	maxIdleHops = 8
	hopIdleFor  = 10 * time.Second
)

// dialHopClient connects to addr, reads the greeting and says EHLO (HELO
// if EHLO is refused).
func dialHopClient(addr, helo string, timeout time.Duration) (*hopClient, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	h := &hopClient{conn: conn, r: bufio.NewReaderSize(conn, maxHopReplyLine+2), w: bufio.NewWriter(conn)}
	if err := h.hello(helo); err != nil {
		conn.Close()
		return nil, err
	}
	return h, nil
}

func (h *hopClient) hello(helo string) error {
	if rep, err := h.read(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	} else if rep.Code != 220 {
		return fmt.Errorf("greeting: %w", rep)
	}
	rep, err := h.cmd("EHLO " + helo)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if rep.Code == 250 {
		h.ext = map[string]bool{}
		for _, l := range strings.Split(rep.Message, "\n")[1:] {
			if kw, _, _ := strings.Cut(l, " "); kw != "" {
				h.ext[strings.ToUpper(kw)] = true
			}
		}
		return nil
	}
	if rep.Code < 500 {
		return fmt.Errorf("EHLO: %w", rep)
	}
	if rep, err = h.cmd("HELO " + helo); err != nil || rep.Code != 250 {
		return fmt.Errorf("HELO: %w", or(err, rep))
	}
	return nil
}

// or is err if there is one, else the unwanted reply.
func or(err error, rep *smtp.SMTPError) error {
	if err != nil {
		return err
	}
	return rep
}

// cmd sends one command and reads its reply.
func (h *hopClient) cmd(line string) (*smtp.SMTPError, error) {
	h.w.WriteString(line + "\r\n")
	if err := h.w.Flush(); err != nil {
		return nil, err
	}
	return h.read()
}

// read reads one reply, each line "ddd-text" but the last "ddd text",
// into the form go-smtp's client gives: Message the lines' texts joined
// by LF with the enhanced code left on, EnhancedCode parsed from the
// first line.
func (h *hopClient) read() (*smtp.SMTPError, error) {
	var text []string
	code := 0
	for n := 0; ; n++ {
		line, err := h.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errHopReplyLine
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if n >= maxHopReplyLines || len(line) < 5 || line[len(line)-2] != '\r' {
			return nil, errHopReplyLine
		}
		line = line[:len(line)-2]
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, errHopReplyLine // a lone CR: the text is passed on
		}
		c, err := strconv.Atoi(string(line[:3]))
		if err != nil || c < 200 || c > 599 || (code != 0 && c != code) || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return nil, fmt.Errorf("next hop's reply %q: %w", line, textproto.ProtocolError("malformed reply"))
		}
		code = c
		if len(line) > 4 {
			text = append(text, string(line[4:]))
		} else {
			text = append(text, "")
		}
		if len(line) == 3 || line[3] == ' ' {
			break
		}
	}
	rep := &smtp.SMTPError{Code: code, Message: strings.Join(text, "\n")}
	if enh, _, ok := strings.Cut(text[0], " "); ok {
		var e smtp.EnhancedCode
		if _, err := fmt.Sscanf(enh, "%d.%d.%d", &e[0], &e[1], &e[2]); err == nil && e[0] == code/100 {
			rep.EnhancedCode = e
		}
	}
	return rep, nil
}

// mailLine is MAIL FROM with the parameters the next hop takes: BODY
// when it offers 8BITMIME, SMTPUTF8 and REQUIRETLS as asked (refused
// here when not offered: neither may be dropped), DSN's only when it
// offers DSN (gw-scan.8).
func (h *hopClient) mailLine(from string, env envelope.Envelope, utf8 bool) (string, error) {
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + from + ">")
	if h.ext["8BITMIME"] {
		b.WriteString(" BODY=8BITMIME")
	}
	if env.RequireTLS {
		if !h.ext["REQUIRETLS"] {
			return "", errors.New("next hop does not offer REQUIRETLS")
		}
		b.WriteString(" REQUIRETLS")
	}
	if utf8 {
		if !h.ext["SMTPUTF8"] {
			return "", errors.New("next hop does not offer SMTPUTF8")
		}
		b.WriteString(" SMTPUTF8")
	}
	if p := env.DSN.String(); p != "" && h.ext["DSN"] {
		b.WriteString(" " + p)
	}
	return b.String(), nil
}

// maxChunked is the largest message (stored bytes, before the scan's
// fields) sent as one BDAT chunk; a larger one goes by DATA, streamed
// from the spool, not copied whole into memory.
const maxChunked = memSpoolMax

// send runs one transaction: MAIL, RCPT to each of to, DATA or BDAT, the
// message as write writes it (stored form, LF line ends, of about size
// bytes; put in wire form here), and returns the next hop's final reply
// text. mailed reports whether MAIL was accepted, after which a failure
// is the message's, not the connection's. On any error the caller closes
// the connection.
func (h *hopClient) send(env envelope.Envelope, from string, to []string, write func(io.Writer) error, utf8 bool, size int64) (reply string, err error, mailed bool) {
	mail, err := h.mailLine(from, env, utf8)
	if err != nil {
		return "", err, false
	}
	cmds := make([]string, 0, len(to)+2)
	cmds = append(cmds, mail)
	for i, r := range to {
		line := "RCPT TO:<" + r + ">"
		if p := env.RcptDSNOf(i).String(); p != "" && h.ext["DSN"] {
			line += " " + p
		}
		cmds = append(cmds, line)
	}
	// One recipient and a small message go by BDAT to a next hop that
	// offers CHUNKING and PIPELINING: MAIL, RCPT, BDAT and the message
	// in one write, their replies in one read, where DATA waits for its
	// 354 in between, a second round trip that wakes both sides. Not for
	// more recipients: DATA's message is sent only once every RCPT was
	// taken, a chunk goes at once, and would be delivered to some
	// recipients of a message the client is told was refused.
	chunked := len(to) == 1 && size <= maxChunked && h.ext["CHUNKING"] && h.ext["PIPELINING"]
	if !chunked {
		cmds = append(cmds, "DATA")
	}
	for _, c := range cmds {
		// A path is one line: a CR or LF in it would be a command of
		// its own at the next hop.
		if strings.ContainsAny(c, "\r\n") {
			return "", fmt.Errorf("%q: CR or LF in a command", c), false
		}
	}
	if chunked {
		return h.sendChunk(cmds, to[0], write)
	}
	reps, err := h.exchange(cmds)
	if len(reps) == 0 || reps[0].Code != 250 {
		return "", fmt.Errorf("MAIL: %w", why(reps, 0, err)), false
	}
	for i := range to {
		if len(reps) <= 1+i || reps[1+i].Code != 250 && reps[1+i].Code != 251 {
			// A DATA the next hop took anyway is left unended: the
			// caller drops the connection and the next hop the message.
			return "", fmt.Errorf("RCPT %s: %w", to[i], why(reps, 1+i, err)), true
		}
	}
	if len(reps) < len(cmds) || reps[len(cmds)-1].Code != 354 {
		return "", fmt.Errorf("DATA: %w", why(reps, len(cmds)-1, err)), true
	}
	// The message goes out a line at a time in large blocks, the final
	// dot with the last (net/textproto's DotWriter went a byte at a
	// time: a tenth of the proxy's CPU on 10 KiB). The replies above
	// emptied h.w, so the blocks go straight to the connection.
	// A failure here leaves the DATA unended: the caller closes the
	// connection, and the next hop drops what it had of the message.
	if h.dataBuf == nil {
		h.dataBuf = make([]byte, 0, dotstuff.BufSize)
	}
	dw := dotstuff.NewWriterBuf(h.conn, h.dataBuf)
	if err := write(dw); err != nil {
		return "", fmt.Errorf("DATA: %w", err), true
	}
	if err := dw.End(); err != nil {
		return "", fmt.Errorf("DATA: %w", err), true
	}
	rep, err := h.read()
	if err != nil || rep.Code != 250 {
		return "", fmt.Errorf("end of DATA: %w", or(err, rep)), true
	}
	return strings.TrimSpace(rep.Message), nil, true
}

// sendChunk sends cmds (MAIL and one RCPT to rcpt), then the message as
// one BDAT LAST chunk, in one write, and reads the three replies. A next
// hop that refused MAIL or the RCPT reads the chunk and refuses it (RFC
// 3030: no recipient, no message); the reply to the chunk is the one
// DATA's end would have had.
func (h *hopClient) sendChunk(cmds []string, rcpt string, write func(io.Writer) error) (reply string, err error, mailed bool) {
	h.chunk.reset()
	if err := write(&h.chunk); err != nil {
		// The message's failure, not the connection's: mailed, so
		// that no fresh connection is tried for it.
		return "", fmt.Errorf("BDAT: %w", err), true
	}
	msg := h.chunk.end()
	head := h.head[:0]
	for _, c := range cmds {
		head = append(append(head, c...), '\r', '\n')
	}
	head = append(strconv.AppendInt(append(head, "BDAT "...), int64(len(msg)), 10), " LAST\r\n"...)
	h.head = head
	// The commands and the message in one writev: no copy of the
	// message, one system call.
	bufs := net.Buffers{head, msg}
	if _, err := bufs.WriteTo(h.conn); err != nil {
		return "", err, false
	}
	reps := make([]*smtp.SMTPError, 0, 3)
	for range 3 {
		rep, rerr := h.read()
		if rerr != nil {
			err = rerr
			break
		}
		reps = append(reps, rep)
	}
	if len(reps) == 0 || reps[0].Code != 250 {
		return "", fmt.Errorf("MAIL: %w", why(reps, 0, err)), false
	}
	if len(reps) < 2 || reps[1].Code != 250 && reps[1].Code != 251 {
		return "", fmt.Errorf("RCPT %s: %w", rcpt, why(reps, 1, err)), true
	}
	if len(reps) < 3 || reps[2].Code != 250 {
		return "", fmt.Errorf("end of DATA: %w", why(reps, 2, err)), true
	}
	return strings.TrimSpace(reps[2].Message), nil, true
}

// exchange sends cmds and reads their replies: all at once to a next hop
// that offers PIPELINING, else one by one, stopping at the first refused
// (a lock-step client sends no RCPT after a refused MAIL, nor DATA
// without a recipient). It returns the replies read, and the error that
// stopped it.
func (h *hopClient) exchange(cmds []string) ([]*smtp.SMTPError, error) {
	reps := make([]*smtp.SMTPError, 0, len(cmds))
	if !h.ext["PIPELINING"] {
		for _, c := range cmds {
			rep, err := h.cmd(c)
			if err != nil {
				return reps, err
			}
			reps = append(reps, rep)
			if rep.Code >= 400 {
				break
			}
		}
		return reps, nil
	}
	for _, c := range cmds {
		h.w.WriteString(c + "\r\n")
	}
	if err := h.w.Flush(); err != nil {
		return reps, err
	}
	for range cmds {
		rep, err := h.read()
		if err != nil {
			return reps, err
		}
		reps = append(reps, rep)
	}
	return reps, nil
}

// why is what became of the i'th command: its reply if one was read,
// else the error that stopped the exchange, else (lock step stopped
// before it) a stand-in that says so.
func why(reps []*smtp.SMTPError, i int, err error) error {
	switch {
	case i < len(reps):
		return reps[i]
	case err != nil:
		return err
	}
	return &smtp.SMTPError{Code: 451, Message: "command not sent: an earlier one was refused"}
}

// quit says QUIT and closes; the reply is not waited for.
func (h *hopClient) quit() {
	h.conn.SetDeadline(time.Now().Add(time.Second))
	h.w.WriteString("QUIT\r\n")
	h.w.Flush()
	h.conn.Close()
}

func (h *hopClient) close() { h.conn.Close() }
