package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/mailbox"
	"gw/lib/tcpserver"
)

// guard is the net.Conn go-smtp's server reads and writes. It is the one
// place gw takes a second look at the byte stream, for what go-smtp
// v0.25.1 gets wrong or leaves out (specs/go-smtp.md):
//
//   - Deadlines: every read and write of the socket gets a fresh one
//     (timeoutConn), so timeoutsmtpd is a per-read timeout, in DATA too.
//   - Command lines: it reads one line at a time from the client and hands
//     go-smtp exactly that line, so it always knows what go-smtp has seen.
//     A line with a CR or NUL inside, or longer than MaxCommandLine, is
//     answered here and never reaches go-smtp. Only the verbs go-smtp
//     handles as gw wants pass (HELO EHLO MAIL RCPT DATA RSET NOOP VRFY
//     QUIT AUTH); STARTTLS (go-smtp matches it by prefix), HELP and every
//     other verb are answered here. The HELO argument is passed sanitized.
//     "RCPT TO:<postmaster>", which go-smtp refuses although RFC 5321
//     requires it, is passed with control/me's domain added; the session
//     judges MAIL and RCPT on the path as the client wrote it (path),
//     parsed by lib/mailbox, not on go-smtp's de-quoted, route-stripped
//     rewrite.
//   - Replies: it watches go-smtp's replies. 354 means DATA: the session
//     reads the body itself from the client's bytes here (readData), and
//     go-smtp is then handed an empty message (".\r\n"), so go-smtp's own
//     DATA reader never sees client bytes. 334 means the next line answers
//     an AUTH challenge. A syntax or sequence error counts towards
//     maxerrors (go-smtp's own limit of 3 is never reached: every line it
//     is handed parses); the one over the limit is replaced by 421. After
//     any 421 the session ends. CHUNKING is dropped from the EHLO reply
//     (BDAT would bypass the DATA policy). Replies are sent when the
//     client's pipelined input is used up (PIPELINING).
//   - Idle sessions: between transactions it tells lib/tcpserver that the
//     session waits (tcpserver.Idle); at shutdown it answers 421 4.3.2 and
//     gives go-smtp EOF.
//   - STARTTLS: it answers 220 and ends go-smtp's server; Serve then runs
//     the handshake and a new server on a new guard, so every state go-smtp
//     and the session learned in plaintext is gone, and so are the bytes
//     the client pipelined after STARTTLS.
type guard struct {
	s    *session
	conn net.Conn      // the transport: a timeoutConn over the socket or TLS
	br   *bufio.Reader // the client's bytes not yet taken
	bw   *bufio.Writer // replies not yet sent

	in      []byte // what go-smtp's next Read gets
	partial []byte // a reply line go-smtp has begun to write

	verb       string // the command the replies being written answer
	path       string // MAIL/RCPT: the path as the client wrote it
	pathErr    error  // MAIL/RCPT: why that path does not parse
	params     string // MAIL/RCPT: the ESMTP parameters after the path
	rcptJudged bool   // the session judged this RCPT (bad recipients count there)
	sasl       bool   // a 334 challenge is out: the next line answers it
	data       bool   // 354 is out: the session reads the body
	greeted    bool   // go-smtp's greeting is dropped (after STARTTLS)

	closeAfter bool // the session ends once the reply under way is out
	closing    bool // the session ends: reads get EOF, replies are dropped
	starttls   bool // it ends so that TLS starts, on the same socket
	closed     chan struct{}
	closeOnce  sync.Once
}

func newGuard(s *session, transport net.Conn) *guard {
	g := &guard{s: s, conn: transport, closed: make(chan struct{})}
	g.br = bufio.NewReaderSize(flushReader{g}, readBuffer)
	g.bw = bufio.NewWriterSize(transport, writeBuffer)
	return g
}

// flushReader reads the client's bytes for g.br, sending the replies
// queued so far first: the client's input is used up, so it waits for
// them (RFC 2920).
type flushReader struct{ g *guard }

func (f flushReader) Read(p []byte) (int, error) {
	f.g.flush()
	return f.g.conn.Read(p)
}

func (g *guard) flush() {
	if g.bw.Buffered() > 0 {
		if err := g.bw.Flush(); err != nil {
			g.end("write_error")
		}
	}
}

// Read hands go-smtp the next command line, an AUTH answer, or the empty
// message that follows a body the session has read.
func (g *guard) Read(p []byte) (int, error) {
	for len(g.in) == 0 {
		if g.closing || g.closeAfter || g.data {
			return 0, io.EOF
		}
		g.next()
	}
	n := copy(p, g.in)
	g.in = g.in[n:]
	return n, nil
}

// next reads one line from the client and either answers it or puts it
// in g.in for go-smtp.
func (g *guard) next() {
	// Between transactions with nothing pipelined, the session only
	// waits for the client: a shutdown ends it here with a 421.
	idle := !g.sasl && !g.s.inMail && g.br.Buffered() == 0
	if idle {
		g.flush()
		if tcpserver.Idle(g.s.raw, true) {
			g.shutdown()
			return
		}
	}
	line, err := readLine(g.br)
	if idle {
		tcpserver.Idle(g.s.raw, false)
	}
	if g.sasl && (errors.Is(err, errLongLine) || errors.Is(err, errBadLine)) {
		g.sasl = false
		g.in = []byte("*\r\n") // go-smtp cancels the exchange with a 501
		return
	}
	switch {
	case idle && err != nil && tcpserver.Closing(g.s.raw):
		g.shutdown()
	case errors.Is(err, errLongLine):
		g.verb = ""
		g.reply(errLineTooLong)
	case errors.Is(err, errBadLine):
		g.verb = ""
		g.reply(errSyntax)
	case isTimeout(err):
		g.reply(errTimeout)
		g.end("timeout")
	case err != nil:
		g.end("disconnect")
	case g.sasl:
		g.sasl = false
		g.in = []byte(line + "\r\n")
	default:
		g.command(line)
	}
}

// command passes a command line to go-smtp or answers it.
func (g *guard) command(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	g.verb = strings.ToUpper(verb)
	g.rcptJudged = false
	switch g.verb {
	case "HELO", "EHLO":
		if arg = strings.TrimSpace(arg); arg != "" {
			g.s.hello(arg, g.verb == "EHLO")
			arg = g.s.helo
		}
	case "MAIL", "RCPT":
		g.path, g.pathErr, g.params = "", mailbox.ErrSyntax, ""
		prefix := "FROM:"
		if g.verb == "RCPT" {
			prefix = "TO:"
		}
		if rest, ok := cutPrefixFold(arg, prefix); ok {
			var params string
			g.path, params, g.pathErr = mailbox.ParsePath(rest)
			g.params = params
			if g.verb == "RCPT" && g.pathErr == nil && strings.EqualFold(g.path, "postmaster") {
				// RFC 5321 4.1.1.3: go-smtp wants a domain. The
				// session decides on g.path, the bare postmaster.
				arg = prefix + "<" + g.path + "@" + g.s.cfg.Hostname + ">"
				if params != "" {
					arg += " " + params
				}
			}
		}
	case "DATA", "RSET", "NOOP", "VRFY", "AUTH":
	case "QUIT":
		g.s.reason = "quit"
	case "STARTTLS":
		g.startTLS(arg)
		return
	case "HELP":
		g.reply(reply(214, "2.0.0", "commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT STARTTLS AUTH"))
		return
	default:
		g.reply(errUnimplemented)
		return
	}
	// Normalized so that go-smtp's parser takes it: the verb, one space,
	// the argument.
	if arg != "" {
		g.in = []byte(g.verb + " " + arg + "\r\n")
	} else {
		g.in = []byte(g.verb + "\r\n")
	}
}

// startTLS answers STARTTLS (exactly that word) and ends go-smtp's
// server; Serve runs the handshake.
func (g *guard) startTLS(arg string) {
	switch {
	case arg != "":
		g.reply(errNoArgs)
	case g.s.cfg.TLS == nil || g.s.tls:
		g.reply(errUnimplemented)
	default:
		g.reply(reply(220, "2.0.0", "ready to start TLS"))
		g.starttls = true
		g.end("")
	}
}

// shutdown ends an idle session because the listener is stopping.
func (g *guard) shutdown() {
	g.reply(errShutdown)
	g.end("shutdown")
}

// end ends the session: go-smtp reads EOF next, and later replies are
// dropped. reason is for the log's end line; the first one given stays.
func (g *guard) end(reason string) {
	g.closing = true
	if g.s.reason == "" || g.s.reason == "quit" && reason != "" {
		g.s.reason = reason
	}
}

// endData tells go-smtp the body is over: the session has read it.
func (g *guard) endData() {
	g.data = false
	g.in = []byte(".\r\n")
}

// reply sends an answer of gw's own, as if go-smtp had written it.
func (g *guard) reply(r *smtp.SMTPError) {
	g.line([]byte(replyLine(r)))
}

func replyLine(r *smtp.SMTPError) string {
	return strconv.Itoa(r.Code) + " " + strconv.Itoa(r.EnhancedCode[0]) + "." + strconv.Itoa(r.EnhancedCode[1]) + "." + strconv.Itoa(r.EnhancedCode[2]) + " " + r.Message
}

// Write takes go-smtp's replies, a line at a time.
func (g *guard) Write(p []byte) (int, error) {
	g.partial = append(g.partial, p...)
	for {
		i := bytes.IndexByte(g.partial, '\n')
		if i < 0 {
			break
		}
		g.line(bytes.TrimSuffix(g.partial[:i], []byte("\r")))
		g.partial = g.partial[i+1:]
	}
	return len(p), nil
}

// errorCodes are the replies that count towards maxerrors: syntax and
// sequence errors (refused recipients count towards maxbadrcpt instead).
var errorCodes = map[int]bool{500: true, 501: true, 502: true, 503: true, 504: true, 530: true, 555: true}

// line queues one reply line, watching it on the way.
func (g *guard) line(l []byte) {
	if g.closing {
		return
	}
	if !g.greeted {
		g.greeted = true
		if g.starttlsDone() && bytes.HasPrefix(l, []byte("220 ")) {
			return // the session goes on after STARTTLS: no new greeting
		}
	}
	if len(l) >= 4 && string(l[:4]) == "250-" && strings.EqualFold(string(l[4:]), "CHUNKING") {
		return
	}
	code := 0
	final := len(l) < 4 || l[3] == ' '
	if final {
		l = rfcCode(l)
		code, _ = strconv.Atoi(string(l[:min(3, len(l))]))
		switch {
		case code == 552 && g.verb == "MAIL":
			// go-smtp refuses SIZE= over databytes before the session
			// hears of the MAIL: the log line is written here.
			g.s.log("info", "mail", "from", g.path, "result", "reject", "reason", "size", "code", 552)
		}
		switch {
		case code == 354:
			g.data = true
		case code == 334:
			g.sasl = true
		case errorCodes[code] && !(g.verb == "RCPT" && g.rcptJudged):
			g.s.errors++
			if m := g.s.cfg.MaxErrors; m > 0 && g.s.errors >= m {
				g.s.log("warning", "too_many_errors", "errors", g.s.errors)
				l, code = []byte(replyLine(errTooManyErrors)), 421
			}
		}
	}
	g.bw.Write(l)
	g.bw.WriteString("\r\n")
	if final && (code == 421 || g.closeAfter) {
		g.end("")
	}
}

// rfcCode gives RFC 5321's codes to two kinds of go-smtp's replies: a
// command out of sequence is 503 (go-smtp says 502, "not implemented"),
// and an unknown MAIL or RCPT parameter is 555 (go-smtp says 500).
func rfcCode(l []byte) []byte {
	s := string(l)
	text, ok := strings.CutPrefix(s, "502 5.5.1 ")
	if ok && (strings.HasPrefix(text, "Missing ") || strings.HasPrefix(text, "Please introduce yourself") ||
		strings.HasSuffix(text, "not allowed during message transfer")) {
		return []byte("503" + s[3:])
	}
	if text, ok := strings.CutPrefix(s, "500 5.5.4 Unknown "); ok && strings.HasSuffix(text, " argument") {
		return []byte("555" + s[3:])
	}
	return l
}

// starttlsDone reports whether this guard serves the TLS part of a
// session that began in plaintext.
func (g *guard) starttlsDone() bool { return g.s.tls && !g.s.cfg.ImplicitTLS }

// Close ends the conversation: what is queued is sent and the socket
// closed, unless TLS is about to start on it.
func (g *guard) Close() error {
	g.closeOnce.Do(func() {
		g.closing = true
		g.flush()
		if !g.starttls {
			g.conn.Close()
		}
		close(g.closed)
	})
	return nil
}

func (g *guard) LocalAddr() net.Addr                { return g.conn.LocalAddr() }
func (g *guard) RemoteAddr() net.Addr               { return g.conn.RemoteAddr() }
func (g *guard) SetDeadline(t time.Time) error      { return nil } // the guard keeps its own
func (g *guard) SetReadDeadline(t time.Time) error  { return nil }
func (g *guard) SetWriteDeadline(t time.Time) error { return nil }

// oneListener hands go-smtp's Server.Serve one connection, then waits
// until that one is closed.
type oneListener struct {
	g     *guard
	taken bool
}

func (l *oneListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.g, nil
	}
	<-l.g.closed
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error   { return nil }
func (l *oneListener) Addr() net.Addr { return l.g.LocalAddr() }

var (
	errLongLine = errors.New("line too long")
	errBadLine  = errors.New("CR or NUL inside a command line")
)

// readLine reads one command line. It ends at LF; one CR before the LF is
// removed (qmail accepts commands that end in a bare LF, and so does gw).
// A CR or NUL anywhere else makes the line a syntax error, so no byte a
// client hides in a command reaches a header or a decision.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > MaxCommandLine {
		for err == bufio.ErrBufferFull {
			_, err = br.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLongLine
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	for _, c := range line {
		if c == '\r' || c == 0 {
			return "", errBadLine
		}
	}
	return string(line), nil
}
