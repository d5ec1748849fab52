// Package smtpserver is gw's SMTP server core: one read loop, one table
// of verbs with the states each is allowed in, one DATA reader, and the
// limits a server on the Internet needs, for every gw listener that
// speaks SMTP (gw-smtpd, gw-scan's proxy). What the listener decides is
// behind one interface, Policy.
//
// Time is counted as Postfix counts it: a command line must arrive whole
// within Timeout (a client trickling one byte at a time gains nothing),
// a message must come at MinDataRate at least (each byte received buys
// 1/MinDataRate seconds, never more than Timeout ahead), and a session
// ends after MaxSession whatever it does.
package smtpserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gw/lib/tcpserver"
)

// Defaults of the limits, documented in gw-smtpd(8).
const (
	DefaultMaxLine     = 2048     // a longer command line is answered ErrLineTooLong
	DefaultLineLimit   = 64 << 10 // a line running past this ends the session (ErrLineLimit)
	DefaultMaxJunk     = 100      // NOOP, RSET, VRFY, HELP without a message between (Postfix's smtpd_junk_command_limit)
	DefaultMinDataRate = 500      // bytes a second in DATA and BDAT (Postfix's smtpd_min_data_rate)
	readBuffer         = 16 << 10
	writeBuffer        = 4 << 10
)

// Config is what the core needs to know to run one session. A listener
// builds one for each client (limits may depend on the client's rule).
type Config struct {
	Hostname    string        // the EHLO reply's name
	Greeting    string        // the 220 text; "" is Hostname
	Timeout     time.Duration // a whole command line, a reply's write, the TLS handshake
	MinDataRate int           // bytes a second in DATA and BDAT; 0: Timeout between reads
	MaxSession  time.Duration // the session's length; 0: no limit
	MaxLine     int           // 0: DefaultMaxLine
	LineLimit   int           // 0: DefaultLineLimit
	MaxJunk     int           // 0: no limit
	MaxErrors   int           // 0: no limit
	MaxRcpt     int           // 0: no limit
	MaxMessage  int64         // the SIZE offered and enforced; 0: no limit
	TLS         *tls.Config   // nil: no STARTTLS
	ImplicitTLS bool          // TLS from the first byte (port 465)
	Auth        bool          // AUTH PLAIN LOGIN offered, over TLS only
	Keywords    []string      // more EHLO keywords, offered as given
	// Idle tells the listener whether the session now waits for the
	// client's next command; it reports whether the session must end
	// (shutdown). Closing reports, after a failed read, whether the
	// listener cut the wait. Both nil: the session is never cut.
	Idle    func(idle bool) (closing bool)
	Closing func() bool
	// Log writes a log line; the session's id is added first.
	Log func(severity, event string, kv ...any)
	// Waiting is called before the session waits for its client: before
	// a read of the client's bytes, a write of replies and the TLS
	// handshake. A listener that holds the lines it logs while the
	// session answers a pipelined batch (logline.Held) writes them here,
	// so a line is never held while the session waits, and is in the log
	// before the client has the reply it goes with. nil: nothing held.
	Waiting func()
}

// state is where a session is in RFC 5321's sequence.
type state uint8

const (
	stGreeted state = 1 << iota // no HELO/EHLO yet
	stReady                     // introduced, no transaction
	stMail                      // MAIL accepted, no recipient yet
	stRcpt                      // at least one recipient accepted
	stChunks                    // BDAT chunks under way (RFC 3030)

	stAny = stGreeted | stReady | stMail | stRcpt | stChunks
)

// conn is one session's protocol state.
type conn struct {
	cfg    Config
	pol    Policy
	s      *Session
	raw    net.Conn // as handed over
	nc     net.Conn // raw, or TLS over it
	feed   *feed
	br     *bufio.Reader
	bw     *bufio.Writer
	st     state
	errors int
	junk   int
	reason string // why the session ended; "" while it goes on
	end    time.Time
	wset   time.Time // when the write deadline was last set; zero: not on this transport

	verb    string // the command being answered
	fromPol bool   // the reply comes from Policy.Rcpt: not a protocol error

	msg      *Message // the BDAT message under way
	sink     *counter
	chunkBad *Reply // the BDAT message is refused: later chunks are read and dropped
}

var seq atomic.Uint64

// NewID returns a session id: unique in the process and over time.
func NewID() string {
	return strconv.FormatUint(uint64(time.Now().UnixNano())/1000, 36) + strconv.FormatUint(seq.Add(1)%1296, 36)
}

// Serve runs one SMTP session on nc, with the client cl, asking pol.
// It closes nc at the end and returns why the session ended (for the
// listener's log line): quit, timeout, disconnect, shutdown, …
func Serve(nc net.Conn, cfg Config, cl tcpserver.Client, id string, pol Policy) (reason string) {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = DefaultMaxLine
	}
	if cfg.LineLimit <= 0 {
		cfg.LineLimit = DefaultLineLimit
	}
	if cfg.Greeting == "" {
		cfg.Greeting = cfg.Hostname
	}
	if cfg.Log == nil {
		cfg.Log = func(string, string, ...any) {}
	}
	c := &conn{cfg: cfg, pol: pol, raw: nc, nc: nc, st: stGreeted}
	c.s = &Session{ID: id, Client: cl, Conn: nc, Start: time.Now(), c: c}
	if cfg.MaxSession > 0 {
		c.end = c.s.Start.Add(cfg.MaxSession)
	}
	c.setTransport(nc)
	defer func() {
		if r := recover(); r != nil {
			c.log("alert", "panic", "err", fmt.Sprint(r))
			c.reply(ErrInternal)
			c.flush()
			c.reason = "panic"
		}
		nc.Close()
		c.release()
		reason = c.reason
	}()
	c.run()
	return c.reason
}

func (c *conn) log(severity, event string, kv ...any) {
	c.cfg.Log(severity, event, kv...)
}

// waiting tells the listener the session is about to wait for its client
// (Config.Waiting).
func (c *conn) waiting() {
	if c.cfg.Waiting != nil {
		c.cfg.Waiting()
	}
}

// The sessions' buffers are reused from one session to the next: a
// fresh 20 KiB a connection was most of what a short session allocated,
// and so most of the garbage collector's work.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}
)

// setTransport reads and writes through t from now on; whatever was
// buffered for the transport before (STARTTLS) is dropped.
func (c *conn) setTransport(t net.Conn) {
	c.nc, c.wset = t, time.Time{} // the handshake cleared the deadline
	c.feed = &feed{c: c, nc: t}
	if c.br == nil {
		c.br, c.bw = readers.Get().(*bufio.Reader), writers.Get().(*bufio.Writer)
	}
	c.br.Reset(c.feed)
	c.bw.Reset(writerFunc(c.write))
}

// release gives the session's buffers back, holding nothing of it.
func (c *conn) release() {
	c.br.Reset(nil)
	c.bw.Reset(nil)
	readers.Put(c.br)
	writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// write sends replies with a deadline of their own: Timeout from the
// write, renewed only once a sixteenth of it has passed since it was
// last set. The time left for a write is never under 15/16 of Timeout,
// and a session's replies share one timer update instead of making one
// each.
func (c *conn) write(p []byte) (int, error) {
	c.waiting() // a client that does not read its replies makes this wait
	if now := time.Now(); c.wset.IsZero() || now.Sub(c.wset) > c.cfg.Timeout/16 {
		c.nc.SetWriteDeadline(now.Add(c.cfg.Timeout))
		c.wset = now
	}
	return c.nc.Write(p)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (c *conn) run() {
	if c.cfg.ImplicitTLS {
		if !c.handshake() {
			return
		}
	}
	if r := c.pol.Connect(c.s); r != nil {
		c.reply(r)
		c.flush()
		c.stop("refused")
		return
	}
	c.line("220 ", c.cfg.Greeting, " ESMTP")
	for c.reason == "" {
		c.command()
	}
	c.flush()
	c.reset() // BDAT chunks the client never finished are abandoned
}

// stop ends the session; the first reason given stays.
func (c *conn) stop(reason string) {
	if c.reason == "" {
		c.reason = reason
	}
}

// flush sends the replies queued so far.
func (c *conn) flush() {
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			c.stop("write_error")
		}
	}
}

// line queues one reply line, given in parts: the writer joins them, with
// no string made for the line.
func (c *conn) line(parts ...string) {
	for _, p := range parts {
		c.bw.WriteString(p)
	}
	c.bw.WriteString("\r\n")
}

// reply queues a final reply, counting errors: the one that reaches
// MaxErrors is replaced by ErrTooManyErrors. A 421 ends the session.
func (c *conn) reply(r *Reply) { c.send(c.count(r)) }

// count counts r if it is an error and returns the reply to send in its
// place: r, or ErrTooManyErrors once MaxErrors is reached.
func (c *conn) count(r *Reply) *Reply {
	if countsAsError(r.Code) && !c.fromPol {
		c.errors++
		if m := c.cfg.MaxErrors; m > 0 && c.errors >= m {
			c.log("warning", "too_many_errors", "errors", c.errors)
			return ErrTooManyErrors
		}
	}
	return r
}

// send queues a counted reply; a 421 ends the session.
func (c *conn) send(r *Reply) {
	if n := r.Code; n >= 100 && n <= 999 { // digit by digit: no string a reply
		c.bw.WriteByte(byte('0' + n/100))
		c.bw.WriteByte(byte('0' + n/10%10))
		c.bw.WriteByte(byte('0' + n%10))
	} else {
		c.bw.WriteString(strconv.Itoa(n))
	}
	c.line(" ", r.Enhanced, " ", r.Text)
	if r.Code == 421 {
		c.stop(reasonOf(r))
	}
}

func reasonOf(r *Reply) string {
	switch r {
	case ErrTooManyErrors:
		return "too_many_errors"
	case ErrTooManyJunk:
		return "too_many_junk"
	case ErrLineLimit:
		return "line_limit"
	case ErrSessionTime:
		return "session_time"
	case ErrShutdown:
		return "shutdown"
	}
	return "closed"
}

// refuse answers a command the core refuses, with the reason logged once.
// The line names the code the client is sent: the 421 of MaxErrors where
// it replaced the refusal's own.
func (c *conn) refuse(r *Reply, reason string, kv ...any) {
	sent := c.count(r)
	c.log("info", "refused", append([]any{"cmd", c.verb, "code", sent.Code, "reason", reason}, kv...)...)
	c.send(sent)
}

// command reads one command line and answers it.
func (c *conn) command() {
	// Between transactions with nothing pipelined the session only waits
	// for the client: that is where a shutdown may end it.
	idle := c.st&(stMail|stRcpt|stChunks) == 0 && c.br.Buffered() == 0
	if idle && c.cfg.Idle != nil {
		c.flush()
		if c.cfg.Idle(true) {
			c.verb = ""
			c.reply(ErrShutdown)
			return
		}
	}
	c.feed.lineDeadline()
	line, err := c.readLine()
	if idle && c.cfg.Idle != nil {
		c.cfg.Idle(false)
	}
	c.verb, c.fromPol = "", false
	switch {
	case err == nil:
	case idle && c.cfg.Closing != nil && c.cfg.Closing():
		c.reply(ErrShutdown)
		return
	case errors.Is(err, errLineLimit):
		c.refuse(ErrLineLimit, "line_limit", "limit", c.cfg.LineLimit)
		return
	case errors.Is(err, errLongLine):
		c.refuse(ErrLineTooLong, "line_too_long")
		return
	case errors.Is(err, errBadLine):
		c.refuse(ErrSyntax, "cr_or_nul_in_command")
		return
	default:
		c.readFailed(err)
		return
	}
	verb, arg, _ := strings.Cut(line, " ")
	c.verb = strings.ToUpper(verb)
	v, ok := verbs[c.verb]
	if !ok {
		c.verb = sanitizeVerb(c.verb)
		c.refuse(ErrUnimplemented, "unknown_command")
		return
	}
	if v.junk {
		c.junk++
		if m := c.cfg.MaxJunk; m > 0 && c.junk > m {
			c.refuse(ErrTooManyJunk, "junk_limit", "count", c.junk)
			return
		}
	}
	if c.st&v.states == 0 {
		c.refuse(c.sequence(v), "out_of_sequence")
		return
	}
	v.run(c, strings.TrimSpace(arg))
}

// readFailed ends the session after a read error: a timeout is answered
// (the client may still read), anything else is a disconnect.
func (c *conn) readFailed(err error) {
	switch {
	case isTimeout(err) && !c.end.IsZero() && !time.Now().Before(c.end):
		c.log("info", "refused", "cmd", c.verb, "code", 421, "reason", "session_time")
		c.reply(ErrSessionTime)
	case isTimeout(err):
		c.log("info", "refused", "cmd", c.verb, "code", ErrTimeout.Code, "reason", "timeout")
		c.reply(ErrTimeout)
		c.stop("timeout")
	default:
		c.stop("disconnect")
	}
}

// sequence is the reply for a verb given in a state it is not allowed in.
func (c *conn) sequence(v *verb) *Reply {
	switch {
	case c.st == stChunks:
		return ErrInChunks
	case c.st == stGreeted:
		return ErrHeloFirst
	case v.name == "RCPT" || v.name == "DATA" || v.name == "BDAT":
		if c.st == stReady {
			return ErrNoMail
		}
		return ErrNoRcpt
	case v.name == "AUTH" && c.s.AuthUser != "":
		return ErrAuthDone
	}
	return ErrNestedMail
}

// sanitizeVerb keeps an unknown verb printable and short for the log.
func sanitizeVerb(v string) string {
	if len(v) > 16 {
		v = v[:16]
	}
	return strings.Map(func(r rune) rune {
		if r < '!' || r > '~' {
			return '?'
		}
		return r
	}, v)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// reset ends the transaction.
func (c *conn) reset() {
	if c.msg != nil { // a BDAT message left unfinished
		c.msg.Refused, c.msg.Reason = ErrLocal, "unfinished"
		c.pol.DataEnd(c.s, c.msg)
		c.msg, c.sink = nil, nil
	}
	c.chunkBad = nil
	if c.s.Mail != nil {
		c.pol.Reset(c.s)
	}
	c.s.Mail, c.s.Rcpts = nil, nil
	if c.st != stGreeted {
		c.st = stReady
	}
}

// handshake runs the TLS server handshake on the client's connection and
// puts the session on it.
func (c *conn) handshake() bool {
	c.waiting()
	tc := tls.Server(c.raw, c.cfg.TLS)
	tc.SetDeadline(time.Now().Add(c.cfg.Timeout))
	if err := tc.Handshake(); err != nil {
		c.log("warning", "tls", "result", "failed", "err", err)
		c.stop("tls_failed")
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.s.TLS = &st
	c.log("info", "tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	c.setTransport(tc)
	return true
}

// feed is where the client's bytes come from: it sends the replies queued
// so far when the client's input is used up (RFC 2920: a pipelining
// client waits for them only then), and puts the deadline on each read.
type feed struct {
	c        *conn
	nc       net.Conn
	deadline time.Time // of the command line or message under way
	rate     int       // bytes a second that extend the deadline; 0: commands
}

// lineDeadline starts a command line: all of it within Timeout.
func (f *feed) lineDeadline() {
	f.deadline, f.rate = time.Now().Add(f.c.cfg.Timeout), 0
}

// dataDeadline starts message bytes: Timeout, extended by every byte.
func (f *feed) dataDeadline() {
	f.deadline, f.rate = time.Now().Add(f.c.cfg.Timeout), f.c.cfg.MinDataRate
	if f.rate == 0 {
		f.rate = -1 // Timeout between reads
	}
}

func (f *feed) Read(p []byte) (int, error) {
	f.c.waiting() // the lines first: they are in the log before the replies are out
	f.c.flush()
	d := f.deadline
	if end := f.c.end; !end.IsZero() && end.Before(d) {
		d = end
	}
	f.nc.SetReadDeadline(d)
	n, err := f.nc.Read(p)
	switch {
	case f.rate < 0:
		f.deadline = time.Now().Add(f.c.cfg.Timeout)
	case f.rate > 0 && n > 0:
		f.deadline = f.deadline.Add(time.Duration(n) * time.Second / time.Duration(f.rate))
		if most := time.Now().Add(f.c.cfg.Timeout); f.deadline.After(most) {
			f.deadline = most
		}
	}
	return n, err
}

// talksFirst: see Session.TalksFirst.
func (c *conn) talksFirst(wait time.Duration) bool {
	if wait <= 0 {
		return c.br.Buffered() > 0 || tcpserver.Pending(c.raw)
	}
	c.feed.deadline, c.feed.rate = time.Now().Add(wait), 0
	_, err := c.br.Peek(1)
	return err == nil
}
