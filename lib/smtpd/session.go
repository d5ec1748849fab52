package smtpd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/mailbox"
	"gw/lib/qq"
	"gw/lib/relay"
	"gw/lib/tcpserver"
)

// Limits on what a client sends, each with its named refusal.
const (
	MaxCommandLine = 2048 // bytes in a command line, CRLF included (errLineTooLong)
	readBuffer     = 16 << 10
	writeBuffer    = 4 << 10
	maxHops        = 100 // Received + Delivered-To lines (errLooping), as qmail
)

// session is one SMTP conversation.
type session struct {
	cfg  *Config
	cl   Client
	raw  net.Conn // as the listener handed it over (tcpserver.Idle)
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	id   string
	log  func(severity, event string, kv ...any)

	helo     string // sanitized HELO/EHLO argument; "" before one
	ehlo     bool
	tls      bool
	authUser string
	errors   int // syntax and sequence errors (MaxErrors)
	badRcpts int // refused recipients (MaxBadRcpt)
	authFail int
	msgs     int
	quit     bool // the session is over once the reply is flushed

	// the transaction
	inMail  bool
	from    mailbox.Address
	badFrom bool
	rcpts   []string

	rblDone   bool
	rblListed *smtp.SMTPError // the refusal for a listed client
}

var sessionSeq atomic.Uint64

func newSessionID() string {
	return strconv.FormatUint(uint64(time.Now().UnixNano())/1000, 36) + strconv.FormatUint(sessionSeq.Add(1)%1296, 36)
}

// Serve runs one SMTP session on conn for client cl and closes conn. It is
// the part both ways of running share: standalone after accept and ACL,
// and under tcpserver on fds 0 and 1.
func Serve(conn net.Conn, cfg *Config, cl Client) {
	s := &session{cfg: cfg, cl: cl, raw: conn, id: newSessionID()}
	s.log = func(sev, event string, kv ...any) {
		cfg.Log.Log(sev, event, append([]any{"sid", s.id}, kv...)...)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log("alert", "panic", "err", fmt.Sprint(r))
			s.bw.Flush()
			s.write(reply(421, "4.3.0", "internal error, closing connection"))
			s.bw.Flush()
		}
		conn.Close()
	}()
	s.setConn(&timeoutConn{Conn: conn, timeout: cfg.Timeout})
	kv := []any{"ip", cl.RemoteIP, "port", cl.RemotePort}
	if cl.HasRemoteHost {
		kv = append(kv, "host", cl.RemoteHost)
	}
	if cl.Rule != "" {
		kv = append(kv, "rule", cl.Rule)
	}
	kv = append(kv, "relay", cl.Relay)
	s.log("info", "connect", kv...)
	reason := s.run()
	s.log("info", "end", "msgs", s.msgs, "reason", reason)
}

func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.br = bufio.NewReaderSize(c, readBuffer)
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(c, writeBuffer)
	} else {
		s.bw.Reset(c)
	}
}

func (s *session) run() string {
	if s.cfg.ImplicitTLS {
		if err := s.handshake(); err != nil {
			return "tls_failed"
		}
	}
	if !s.cfg.ImplicitTLS && !s.cl.Relay && s.pregreet() {
		// A client that talks before the greeting is not waiting for
		// replies: a spam engine (Postfix postscreen's PREGREET).
		s.log("info", "pregreet", "delay", s.cfg.GreetDelay.Seconds())
		s.write(errPregreet)
		s.bw.Flush()
		return "pregreet"
	}
	s.bw.WriteString("220 " + s.cfg.Greeting + " ESMTP\r\n")
	for !s.quit {
		if s.br.Buffered() == 0 { // PIPELINING: answer a whole group at once
			if err := s.bw.Flush(); err != nil {
				return "write_error"
			}
		}
		// Between transactions with nothing pipelined, the session only
		// waits for the client: a shutdown ends it here with a 421.
		idle := !s.inMail && s.br.Buffered() == 0
		if idle && tcpserver.Idle(s.raw, true) {
			return s.shutdown()
		}
		line, err := s.readLine()
		if idle {
			tcpserver.Idle(s.raw, false)
		}
		switch {
		case idle && err != nil && tcpserver.Closing(s.raw):
			return s.shutdown()
		case errors.Is(err, errLongLine):
			s.protocolError(errLineTooLong)
			continue
		case errors.Is(err, errBadLine):
			s.protocolError(errSyntax)
			continue
		case isTimeout(err):
			s.write(errTimeout)
			s.bw.Flush()
			return "timeout"
		case err != nil:
			return "disconnect"
		}
		s.command(line)
	}
	s.bw.Flush()
	return "quit"
}

// shutdown ends an idle session because the listener is stopping.
func (s *session) shutdown() string {
	s.write(errShutdown)
	s.bw.Flush()
	return "shutdown"
}

// pregreet reports whether the client sent anything before the greeting:
// during control/greetdelay when it is set, else already by now (a look
// at the socket that does not wait).
func (s *session) pregreet() bool {
	tc, ok := s.conn.(*timeoutConn)
	if !ok {
		return false
	}
	if d := s.cfg.GreetDelay; d > 0 {
		saved := tc.timeout
		tc.timeout = d
		_, err := s.br.Peek(1)
		tc.timeout = saved
		return err == nil
	}
	sc, ok := tc.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	})
	return n > 0
}

var (
	errLongLine = errors.New("line too long")
	errBadLine  = errors.New("CR or NUL inside a command line")
)

// readLine reads one command line. It ends at LF; one CR before the LF is
// removed (qmail accepts commands that end in a bare LF, and so does gw).
// A CR or NUL anywhere else makes the line a syntax error, so no byte a
// client hides in a command reaches a header or a decision.
func (s *session) readLine() (string, error) {
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > MaxCommandLine {
		for err == bufio.ErrBufferFull {
			_, err = s.br.ReadSlice('\n')
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// write queues a reply; it is sent when the client's input is drained.
func (s *session) write(r *smtp.SMTPError) {
	fmt.Fprintf(s.bw, "%d %d.%d.%d %s\r\n", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
	if r.Code == 421 {
		s.quit = true
	}
}

// protocolError answers a syntax or sequence error and counts it; at
// MaxErrors the session ends.
func (s *session) protocolError(r *smtp.SMTPError) {
	s.errors++
	if s.cfg.MaxErrors > 0 && s.errors >= s.cfg.MaxErrors {
		s.log("warning", "too_many_errors", "errors", s.errors)
		s.write(errTooManyErrors)
		return
	}
	s.write(r)
}

func (s *session) command(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "HELO":
		s.hello(arg, false)
	case "EHLO":
		s.hello(arg, true)
	case "MAIL":
		s.mail(arg)
	case "RCPT":
		s.rcpt(arg)
	case "DATA":
		s.data(arg)
	case "RSET":
		if arg != "" {
			s.protocolError(errNoArgs)
			return
		}
		s.reset()
		s.write(reply(250, "2.0.0", "flushed"))
	case "NOOP":
		s.write(reply(250, "2.0.0", "ok"))
	case "HELP":
		// Advertised in the EHLO reply, so answered (RFC 5321 4.1.1.8).
		s.write(reply(214, "2.0.0", "commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT STARTTLS AUTH"))
	case "VRFY":
		s.write(reply(252, "2.5.0", "send some mail, i'll try my best"))
	case "QUIT":
		s.write(reply(221, "2.0.0", s.cfg.Hostname))
		s.quit = true
	case "STARTTLS":
		s.starttls(arg)
	case "AUTH":
		s.auth(arg)
	default:
		s.protocolError(errUnimplemented)
	}
}

func (s *session) reset() {
	s.inMail, s.badFrom, s.rcpts = false, false, s.rcpts[:0]
	s.from = mailbox.Address{}
}

func (s *session) hello(arg string, ehlo bool) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		s.protocolError(errNeedArg)
		return
	}
	s.reset()
	s.helo, s.ehlo = sanitize(arg), ehlo
	s.log("info", "helo", "helo", arg, "ehlo", ehlo)
	if !ehlo {
		s.write(reply(250, "2.0.0", s.cfg.Hostname))
		return
	}
	s.bw.WriteString("250-" + s.cfg.Hostname + "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n")
	if lim := s.databytes(); lim > 0 {
		s.bw.WriteString("250-SIZE " + strconv.FormatInt(lim, 10) + "\r\n")
	}
	if s.cfg.TLS != nil && !s.tls {
		s.bw.WriteString("250-STARTTLS\r\n")
	}
	if s.cfg.Auth != nil && s.tls {
		s.bw.WriteString("250-AUTH PLAIN LOGIN\r\n")
	}
	s.bw.WriteString("250 HELP\r\n")
}

func (s *session) databytes() int64 {
	if s.cl.HasDatabytes {
		return s.cl.Databytes
	}
	return s.cfg.Databytes
}

// relays reports whether the client may send to any domain.
func (s *session) relays() bool { return s.cl.Relay || s.authUser != "" }

func (s *session) mail(arg string) {
	if s.inMail {
		s.protocolError(errNestedMail)
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		s.protocolError(errSyntax)
		return
	}
	path, params, err := mailbox.ParsePath(rest)
	if err != nil {
		s.protocolError(addressError(err, errBadSender))
		return
	}
	from, err := mailbox.Parse(path)
	if err == nil && from.Postmaster() {
		err = mailbox.ErrNoDomain
	}
	if err != nil {
		s.log("info", "mail", "from", path, "result", "reject", "reason", err)
		s.protocolError(addressError(err, errBadSender))
		return
	}
	for _, p := range strings.Fields(params) {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				s.protocolError(errBadParam)
				return
			}
			if lim := s.databytes(); lim > 0 && n > lim {
				s.log("info", "mail", "from", from.String(), "result", "reject", "reason", "size", "size", n)
				s.write(errTooBigSize)
				return
			}
		case "BODY":
			if u := strings.ToUpper(v); u != "7BIT" && u != "8BITMIME" {
				s.protocolError(errBadParam)
				return
			}
		case "AUTH":
			// RFC 4954 5: accepted and ignored; its value is never
			// trusted or copied anywhere (Exim CVE-2020-28021).
		default:
			s.protocolError(errBadParam)
			return
		}
	}
	s.inMail, s.from = true, from
	s.badFrom = !from.Null && s.cfg.BadMailFrom.Match(from.String())
	s.log("info", "mail", "from", from.String(), "result", "accept", "badmailfrom", s.badFrom)
	s.write(reply(250, "2.1.0", "ok"))
}

func addressError(err error, syntax *smtp.SMTPError) *smtp.SMTPError {
	switch {
	case errors.Is(err, mailbox.ErrNonASCII):
		return errNonASCII
	case errors.Is(err, mailbox.ErrTooLong):
		return errAddrTooLong
	case errors.Is(err, mailbox.ErrQuoted):
		return errQuotedRcpt
	}
	return syntax
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

func (s *session) rcpt(arg string) {
	if !s.inMail {
		s.protocolError(errMailFirst)
		return
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		s.protocolError(errSyntax)
		return
	}
	path, params, err := mailbox.ParsePath(rest)
	if err != nil {
		s.protocolError(addressError(err, errBadRcpt))
		return
	}
	if params != "" {
		s.protocolError(errBadParam)
		return
	}
	to, err := mailbox.Parse(path)
	if err == nil && to.Null {
		err = mailbox.ErrSyntax
	}
	if err != nil {
		s.refuseRcpt(path, addressError(err, errBadRcpt), err.Error())
		return
	}
	if s.cfg.MaxRcpt > 0 && len(s.rcpts) >= s.cfg.MaxRcpt {
		s.log("info", "rcpt", "to", to.String(), "result", "reject", "reason", "maxrcpt")
		s.write(errTooManyRcpt)
		return
	}
	r, reason := s.decide(&to)
	if r != nil {
		s.refuseRcpt(to.String(), r, reason)
		return
	}
	addr := to.String()
	if s.cl.Relay && s.cl.RelayAppend != "" {
		addr += s.cl.RelayAppend // qmail's RELAYCLIENT suffix
	}
	if err := envelope.CheckAddress(addr); err != nil {
		s.refuseRcpt(addr, errAddrTooLong, err.Error())
		return
	}
	s.rcpts = append(s.rcpts, addr)
	s.log("info", "rcpt", "to", addr, "result", "accept", "reason", reason)
	s.write(reply(250, "2.1.5", "ok"))
}

func (s *session) refuseRcpt(to string, r *smtp.SMTPError, reason string) {
	s.log("info", "rcpt", "to", to, "result", "reject", "code", r.Code, "reason", reason)
	s.badRcpts++
	if s.cfg.MaxBadRcpt > 0 && s.badRcpts >= s.cfg.MaxBadRcpt {
		s.log("warning", "too_many_bad_rcpts", "count", s.badRcpts)
		s.write(errTooManyBad)
		return
	}
	s.write(r)
}

// decide is the recipient policy, in order: badmailfrom, postmaster,
// relay control, badrcptto, DNSBL, unknown users (the list, then the
// callout), greylisting. It may rewrite a (postmaster, localiphost). A
// nil reply accepts.
func (s *session) decide(a *mailbox.Address) (*smtp.SMTPError, string) {
	if s.badFrom {
		return errBadMailFrom, "badmailfrom"
	}
	if a.Postmaster() { // RFC 5321 4.5.1: always accepted
		a.Domain = strings.ToLower(s.cfg.Hostname)
		return nil, "postmaster"
	}
	if ip, ok := a.LiteralIP(); ok && s.cfg.LocalIPHost != "" {
		if local, err := netip.ParseAddr(s.cl.LocalIP); err == nil && local.Unmap() == ip.Unmap() {
			a.Domain, a.Literal = strings.ToLower(s.cfg.LocalIPHost), false // qmail's box@[local IP]
		}
	}
	reason := "relayclient"
	if s.authUser != "" {
		reason = "authenticated"
	}
	if !s.relays() {
		switch v := s.cfg.Domains.Decide(*a); v {
		case relay.Local:
			reason = v.String()
		case relay.Routed:
			return errRouted, v.String()
		default:
			return errNoRelay, v.String()
		}
	}
	if s.cfg.BadRcptTo.Match(a.String()) {
		return errBadRcptTo, "badrcptto"
	}
	if !s.relays() {
		if r := s.rbl(); r != nil {
			return r, "dnsbl"
		}
	}
	if s.cfg.Recipients != nil && s.cfg.Domains.Accepts(a.Domain) {
		ok, err := s.cfg.Recipients.Valid(a.Local, a.Domain)
		if err != nil {
			s.log("warning", "recipients", "err", err)
			return errLocal, "recipients_unreadable"
		}
		if !ok && !strings.EqualFold(a.Local, "postmaster") && !strings.EqualFold(a.Local, "abuse") {
			return errUnknownUser, "unknown_user"
		}
	}
	if s.cfg.Verifier != nil && s.cfg.Domains.Accepts(a.Domain) && !strings.EqualFold(a.Local, "postmaster") {
		v, detail := s.cfg.Verifier.Verify(a.Local, a.Domain)
		switch v {
		case Unknown:
			s.log("info", "callout", "to", a.String(), "result", "unknown", "detail", detail)
			return errUnknownUser, "callout_unknown"
		case Unverified:
			s.log("warning", "callout", "to", a.String(), "result", "unverified", "detail", detail)
			return errUnverified, "callout_unverified"
		case Exists:
			s.log("info", "callout", "to", a.String(), "result", "exists", "detail", detail)
		}
	}
	if !s.relays() && s.cfg.Greylist != nil && !s.cl.NoGreylist {
		pass, err := s.cfg.Greylist.Check(s.cl.RemoteIP, s.from.String(), a.String())
		if err != nil { // fail open: greylisting is a delay, not a defence to keep at any cost
			s.log("warning", "greylist", "err", err)
		} else if !pass {
			return errGreylisted, "greylisted"
		}
	}
	return nil, reason
}

// rbl returns the refusal for a listed client, looking it up once a
// session: rblsmtpd's RBLSMTPD first (set and empty: never listed; set:
// listed with that text, 553 when it starts with '-', else 451), then the
// zones of control/rblzones.
func (s *session) rbl() *smtp.SMTPError {
	if s.rblDone {
		return s.rblListed
	}
	s.rblDone = true
	if s.cl.HasRBLSMTPD {
		if s.cl.RBLSMTPD == "" {
			return nil
		}
		s.rblListed = rblReply(s.cl.RBLSMTPD)
		s.log("info", "dnsbl", "listed", true, "source", "RBLSMTPD")
		return s.rblListed
	}
	if s.cfg.RBL == nil {
		return nil
	}
	hit, err := s.cfg.RBL.Lookup(s.cl.RemoteIP)
	if err != nil {
		s.log("warning", "dnsbl", "err", err)
	}
	if hit == nil {
		return nil
	}
	s.log("info", "dnsbl", "listed", true, "zone", hit.Zone, "text", hit.Text)
	text := hit.Text
	if text == "" {
		text = "listed at " + hit.Zone
	}
	if hit.Permanent {
		text = "-" + text
	}
	s.rblListed = rblReply(text)
	return s.rblListed
}

// rblReply is rblsmtpd's reply: 553 for a text that starts with '-', 451
// otherwise; at most 200 bytes, bytes outside printable ASCII as '?'.
func rblReply(text string) *smtp.SMTPError {
	code, enh := 451, "4.7.1"
	if strings.HasPrefix(text, "-") {
		code, enh, text = 553, "5.7.1", text[1:]
	}
	b := []byte(text)
	if len(b) > 200 {
		b = b[:200]
	}
	for i, c := range b {
		if c < 32 || c > 126 {
			b[i] = '?'
		}
	}
	return reply(code, enh, string(b))
}

func (s *session) data(arg string) {
	switch {
	case arg != "":
		s.protocolError(errNoArgs)
		return
	case !s.inMail:
		s.protocolError(errMailFirst)
		return
	case len(s.rcpts) == 0:
		s.protocolError(errRcptFirst)
		return
	}
	defer s.reset()
	s.msgs++
	msgID := s.id + "." + strconv.Itoa(s.msgs)
	env := envelope.Envelope{Sender: s.from.String(), Recipients: s.rcpts}
	inj := s.cl.Injector
	if inj == nil {
		inj = handoff.Select(os.Getenv)
	}
	tx, err := inj.Begin(env)
	if err != nil {
		s.log("warning", "refused", "msg", msgID, "code", 451, "err", err)
		s.write(errNoInjector)
		return
	}
	s.bw.WriteString("354 go ahead\r\n")
	if err := s.bw.Flush(); err != nil {
		tx.Abort()
		s.quit = true
		return
	}
	m := &messageWriter{tx: tx, limit: s.databytes()}
	m.header = true
	io.WriteString(tx, s.received(msgID))
	err = readData(s.br, m)
	switch {
	case errors.Is(err, errBareLF) || errors.Is(err, errBareCR):
		tx.Abort()
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", err)
		s.write(errBareLine)
		s.quit = true
		return
	case isTimeout(err):
		tx.Abort()
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", "timeout")
		s.write(errTimeout)
		s.quit = true
		return
	case err != nil:
		tx.Abort()
		s.log("warning", "refused", "msg", msgID, "reason", "disconnect", "err", err)
		s.quit = true
		return
	case m.over:
		tx.Abort()
		s.log("info", "refused", "msg", msgID, "code", 552, "reason", "databytes", "size", m.size)
		s.write(errTooBig)
		return
	case m.hops >= maxHops:
		tx.Abort()
		s.log("info", "refused", "msg", msgID, "code", 554, "reason", "looping", "hops", m.hops)
		s.write(errLooping)
		return
	}
	code, err := tx.Commit()
	if code != qq.OK {
		r := queueReply(qq.Permanent(code), qq.Reply(code))
		s.log("warning", "refused", "msg", msgID, "code", r.Code, "qq", code, "err", err)
		s.write(r)
		return
	}
	s.log("info", "accepted", "msg", msgID, "from", env.Sender, "rcpts", len(env.Recipients), "size", m.size)
	s.write(reply(250, "2.0.0", "ok "+msgID))
}

// messageWriter passes the stored message to the injector, counting its
// size (databytes counts the stored form, as qmail does) and its hops
// (Received and Delivered-To lines in the header), and stops passing once
// the message is over the size limit.
type messageWriter struct {
	tx     handoff.Tx
	limit  int64
	size   int64
	over   bool
	header bool   // still in the header
	sol    bool   // at the start of a line (set by the first write)
	prefix []byte // the start of the current header line, up to 13 bytes
	hops   int
}

func (m *messageWriter) Write(p []byte) (int, error) {
	m.size += int64(len(p))
	if m.limit > 0 && m.size > m.limit {
		m.over = true
	}
	if !m.over {
		m.tx.Write(p)
	}
	if m.header {
		m.scanHeader(p)
	}
	return len(p), nil
}

func (m *messageWriter) scanHeader(p []byte) {
	for _, c := range p {
		if c == '\n' {
			if len(m.prefix) == 0 {
				m.header = false // the empty line ends the header
				return
			}
			m.countHop()
			m.prefix = m.prefix[:0]
			continue
		}
		if len(m.prefix) < 13 {
			m.prefix = append(m.prefix, c)
		}
	}
}

func (m *messageWriter) countHop() {
	p := strings.ToLower(string(m.prefix))
	if strings.HasPrefix(p, "received:") || strings.HasPrefix(p, "delivered-to:") {
		m.hops++
	}
}

func (s *session) proto() string {
	p := "SMTP"
	if s.ehlo {
		p = "ESMTP"
		if s.tls {
			p += "S"
		}
		if s.authUser != "" {
			p += "A"
		}
	}
	return p
}

// received returns the trace line in qmail's form, with RFC 3848's
// protocol word and the message's id:
//
//	Received: from HOST (HELO helo) (info@IP)
//	  by LOCALHOST (gw-smtpd) with ESMTP id ID; DATE
//
// Every field the client chose passes sanitize.
func (s *session) received(id string) string {
	var b strings.Builder
	host := "unknown"
	if s.cl.HasRemoteHost {
		host = sanitize(s.cl.RemoteHost)
	}
	b.WriteString("Received: from ")
	b.WriteString(host)
	if s.helo != "" && !strings.EqualFold(s.helo, host) {
		b.WriteString(" (HELO " + s.helo + ")")
	}
	b.WriteString(" (")
	if s.cl.HasRemoteInfo {
		b.WriteString(sanitize(s.cl.RemoteInfo) + "@")
	}
	b.WriteString(sanitize(orUnknown(s.cl.RemoteIP)) + ")\n  by ")
	local := s.cl.LocalHost
	if local == "" {
		local = s.cl.LocalIP
	}
	b.WriteString(sanitize(orUnknown(local)))
	b.WriteString(" (gw-smtpd) with " + s.proto() + " id " + id + "; ")
	b.WriteString(date822(time.Now()) + "\n")
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func date822(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04:05 -0000") }

// sanitize keeps the bytes qmail's received.c keeps (letters, digits and
// ".@%+/=:-[]") and turns every other into '?', so nothing a client says
// can start a header line or end one.
func sanitize(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".@%+/=:-[]", c) >= 0) {
			b[i] = '?'
		}
	}
	return string(b)
}

// timeoutConn puts a fresh deadline on every read and write, so a session
// times out when the client stops sending for Timeout, not when a long
// message takes longer than Timeout in total (qmail's timeoutsmtpd is a
// per-read timeout too).
type timeoutConn struct {
	net.Conn
	timeout time.Duration
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}

// handshake runs the TLS server handshake on the session's connection.
func (s *session) handshake() error {
	raw := s.conn
	if c, ok := raw.(*timeoutConn); ok {
		raw = c.Conn
	}
	tc := tls.Server(raw, s.cfg.TLS)
	if s.cfg.Timeout > 0 {
		tc.SetDeadline(time.Now().Add(s.cfg.Timeout))
	}
	if err := tc.Handshake(); err != nil {
		s.log("warning", "tls", "result", "failed", "err", err)
		return err
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.log("info", "tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	s.tls = true
	s.setConn(&timeoutConn{Conn: tc, timeout: s.cfg.Timeout})
	return nil
}

// starttls answers STARTTLS (exactly that word). Whatever the client sent
// after it in plaintext is discarded with the old reader (the
// CVE-2011-0411 class), and all state learned before TLS is forgotten
// (RFC 3207 4.2).
func (s *session) starttls(arg string) {
	switch {
	case arg != "":
		s.protocolError(errNoArgs)
		return
	case s.cfg.TLS == nil || s.tls:
		s.protocolError(errUnimplemented)
		return
	}
	s.write(reply(220, "2.0.0", "ready to start TLS"))
	if err := s.bw.Flush(); err != nil {
		s.quit = true
		return
	}
	if err := s.handshake(); err != nil {
		s.quit = true
		return
	}
	s.reset()
	s.helo, s.ehlo = "", false
}
