package smtpd

import (
	"context"
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
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/dsn"
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
)

// session is one SMTP conversation. The protocol is go-smtp's
// (smtp.Server, one per connection, or two when STARTTLS starts TLS);
// session is its Backend's Session and AuthSession, and gw's policy. What
// go-smtp leaves out or gets wrong is done around it: by guard (the
// connection it reads and writes) and by Data, which reads the body from
// the client's bytes under gw's line-ending policy (readData).
type session struct {
	cfg *Config
	cl  Client
	raw net.Conn // as the listener handed it over (tcpserver.Idle)
	g   *guard   // the connection go-smtp is serving now
	id  string
	log func(severity, event string, kv ...any)

	helo     string // sanitized HELO/EHLO argument; "" before one
	ehlo     bool
	tls      bool
	authUser string
	errors   int // syntax and sequence errors (MaxErrors)
	badRcpts int // refused recipients (MaxBadRcpt)
	authFail int
	msgs     int
	reason   string // why the session ended, for the log

	// the transaction
	inMail  bool
	from    mailbox.Address
	badFrom bool
	rcpts   []string
	dsn     dsn.Mail   // MAIL's RET and ENVID
	rcptDSN []dsn.Rcpt // each accepted recipient's NOTIFY and ORCPT, by index into rcpts

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
			if s.g != nil {
				s.g.closing = false
				s.g.reply(reply(421, "4.3.0", "internal error, closing connection"))
				s.g.flush()
			}
		}
		conn.Close()
	}()
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

func (s *session) run() string {
	var transport net.Conn = &timeoutConn{Conn: s.raw, timeout: s.cfg.Timeout}
	if s.cfg.ImplicitTLS {
		tc, err := s.handshake()
		if err != nil {
			return "tls_failed"
		}
		transport = &timeoutConn{Conn: tc, timeout: s.cfg.Timeout}
	}
	s.g = newGuard(s, transport)
	if !s.cfg.ImplicitTLS && !s.cl.Relay && s.pregreet() {
		// A client that talks before the greeting is not waiting for
		// replies: a spam engine (Postfix postscreen's PREGREET).
		s.log("info", "pregreet", "delay", s.cfg.GreetDelay.Seconds())
		s.g.reply(errPregreet)
		s.g.flush()
		return "pregreet"
	}
	for {
		s.serveSMTP()
		if !s.g.starttls {
			break
		}
		// STARTTLS: whatever the client sent after it in plaintext is
		// dropped with the old guard (the CVE-2011-0411 class), and all
		// state learned before TLS is forgotten (RFC 3207 4.2): go-smtp
		// starts afresh on the new guard.
		tc, err := s.handshake()
		if err != nil {
			return "tls_failed"
		}
		s.reset()
		s.helo, s.ehlo = "", false
		s.g = newGuard(s, &timeoutConn{Conn: tc, timeout: s.cfg.Timeout})
	}
	if s.reason == "" {
		return "quit"
	}
	return s.reason
}

// serveSMTP runs go-smtp's server on s.g until the guard is closed. The
// server is made for this client: its greeting, SIZE (databytes, from the
// ACL or control/databytes), STARTTLS while there is no TLS. go-smtp's
// own timeouts are off: the guard's transport puts a deadline on every
// read and write.
func (s *session) serveSMTP() {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return s, nil }))
	srv.Domain = s.cfg.Greeting
	srv.MaxMessageBytes = s.databytes()
	srv.MaxLineLength = 2 * MaxCommandLine // the guard hands it shorter lines only
	// go-smtp cannot see TLS through the guard; AUTH is offered and
	// allowed only over TLS by AuthMechanisms and Auth.
	srv.AllowInsecureAuth = true
	// DSN (RFC 3461) is advertised and go-smtp lets its parameters
	// through; the session reads them again from the guard with lib/dsn.
	srv.EnableDSN = true
	if s.cfg.TLS != nil && !s.tls {
		srv.TLSConfig = s.cfg.TLS // advertises STARTTLS; the guard answers it
	}
	srv.ErrorLog = smtpLog{s}
	srv.Serve(&oneListener{g: s.g})
	srv.Shutdown(context.Background()) // waits for the connection's goroutine
}

// smtpLog takes go-smtp's reports of unexpected errors (panics in a
// command, with the stack).
type smtpLog struct{ s *session }

func (l smtpLog) Printf(format string, v ...any) {
	l.s.log("alert", "smtp", "err", fmt.Sprintf(format, v...))
}
func (l smtpLog) Println(v ...any) { l.s.log("alert", "smtp", "err", fmt.Sprint(v...)) }

// pregreet reports whether the client sent anything before the greeting:
// during control/greetdelay when it is set, else already by now (a look
// at the socket that does not wait).
func (s *session) pregreet() bool {
	tc, ok := s.g.conn.(*timeoutConn)
	if !ok {
		return false
	}
	if d := s.cfg.GreetDelay; d > 0 {
		saved := tc.timeout
		tc.timeout = d
		_, err := s.g.br.Peek(1)
		tc.timeout = saved
		return err == nil
	}
	return tcpserver.Pending(tc.Conn)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// hello records a HELO or EHLO argument (the guard calls it; go-smtp
// answers and resets the transaction).
func (s *session) hello(arg string, ehlo bool) {
	s.helo, s.ehlo = sanitize(arg), ehlo
	s.log("info", "helo", "helo", arg, "ehlo", ehlo)
}

// Reset ends the transaction (smtp.Session: RSET, EHLO, after DATA).
func (s *session) Reset() { s.reset() }

func (s *session) reset() {
	s.inMail, s.badFrom, s.rcpts, s.rcptDSN = false, false, s.rcpts[:0], s.rcptDSN[:0]
	s.from, s.dsn = mailbox.Address{}, dsn.Mail{}
}

// Logout is go-smtp's goodbye; Serve does the rest.
func (s *session) Logout() error { return nil }

func (s *session) databytes() int64 {
	if s.cl.HasDatabytes {
		return s.cl.Databytes
	}
	return s.cfg.Databytes
}

// relays reports whether the client may send to any domain.
func (s *session) relays() bool { return s.cl.Relay || s.authUser != "" }

// Mail starts a transaction (smtp.Session). go-smtp has checked the
// syntax and the parameters (SIZE against databytes); the sender is the
// path the client wrote, parsed by lib/mailbox (guard.path).
func (s *session) Mail(_ string, opts *smtp.MailOptions) error {
	if s.inMail {
		// go-smtp would keep its recipients: no second MAIL.
		return errNestedMail
	}
	path, err := s.g.path, s.g.pathErr
	if err != nil {
		return addressError(err, errBadSender)
	}
	from, err := mailbox.Parse(path)
	if err == nil && from.Postmaster() {
		err = mailbox.ErrNoDomain
	}
	if path == mailbox.DoubleBounce { // gw-send's and qmail's double bounces
		from, err = mailbox.Address{Local: "#", Domain: "[]", Literal: true}, nil
	}
	if err != nil {
		s.log("info", "mail", "from", path, "result", "reject", "reason", err)
		return addressError(err, errBadSender)
	}
	// RFC 4954 5: AUTH= is accepted and ignored; its value is never
	// trusted, logged or copied anywhere (Exim CVE-2020-28021). go-smtp
	// xtext-decodes it: control bytes in it make the command a syntax
	// error.
	if opts != nil && opts.Auth != nil && strings.ContainsFunc(*opts.Auth, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		s.log("info", "mail", "from", from.String(), "result", "reject", "reason", "auth_param")
		return errBadAuthParam
	}
	var md dsn.Mail
	if err := takeDSN(s.g.params, md.Param); err != nil {
		s.log("info", "mail", "from", from.String(), "result", "reject", "reason", "dsn_param", "err", err)
		return dsnReply(err)
	}
	if s.noSpace(from, opts) {
		return errNoSpace
	}
	s.inMail, s.from, s.dsn = true, from, md
	s.badFrom = !from.Null && s.cfg.BadMailFrom.Match(from.String())
	s.log("info", "mail", "from", from.String(), "result", "accept", "badmailfrom", s.badFrom)
	return nil
}

// Rcpt judges a recipient (smtp.Session) on the path the client wrote.
func (s *session) Rcpt(_ string, _ *smtp.RcptOptions) error {
	path, err := s.g.path, s.g.pathErr
	if err != nil {
		return addressError(err, errBadRcpt) // a syntax error: it counts as one
	}
	s.g.rcptJudged = true
	to, err := mailbox.Parse(path)
	if err == nil && to.Null {
		err = mailbox.ErrSyntax
	}
	if err != nil {
		return s.refuseRcpt(path, addressError(err, errBadRcpt), err.Error())
	}
	if s.cfg.MaxRcpt > 0 && len(s.rcpts) >= s.cfg.MaxRcpt {
		s.log("info", "rcpt", "to", to.String(), "result", "reject", "reason", "maxrcpt")
		return errTooManyRcpt
	}
	var rd dsn.Rcpt
	if err := takeDSN(s.g.params, rd.Param); err != nil {
		return s.refuseRcpt(to.String(), dsnReply(err), "dsn_param: "+err.Error())
	}
	r, reason := s.decide(&to)
	if r != nil {
		return s.refuseRcpt(to.String(), r, reason)
	}
	addr := to.String()
	if s.cl.Relay && s.cl.RelayAppend != "" {
		addr += s.cl.RelayAppend // qmail's RELAYCLIENT suffix
	}
	if err := envelope.CheckAddress(addr); err != nil {
		// Only RELAYCLIENT's suffix can make a parsed address fail here.
		r := errAddrTooLong
		if e := (*envelope.Error)(nil); errors.As(err, &e) && e.Code == qq.BadAddress {
			r = errBadRcpt
		}
		return s.refuseRcpt(addr, r, err.Error())
	}
	s.rcpts = append(s.rcpts, addr)
	s.rcptDSN = append(s.rcptDSN, rd)
	s.log("info", "rcpt", "to", addr, "result", "accept", "reason", reason)
	return nil
}

// Data reads the message (smtp.Session) and hands it to the injector.
// go-smtp has sent 354; the body is read from the client's bytes by
// readData, not from r: go-smtp's reader passes bare LF and CR, rewrites
// some malformed lines and does not end at "<CR><CR><LF>.<CR><LF>"
// (specs/go-smtp.md). r then gets an empty message from the guard. Every
// reply is an unwrapped *smtp.SMTPError (go-smtp type-asserts; anything
// else would be a permanent 554 with the error's text).
func (s *session) Data(r io.Reader) error {
	g := s.g
	s.msgs++
	msgID := s.id + "." + strconv.Itoa(s.msgs)
	env := envelope.Envelope{Sender: s.from.String(), DSN: s.dsn}
	for i, r := range s.rcpts {
		env.Add(r, s.rcptDSN[i])
	}
	inj := s.cl.Injector
	if inj == nil {
		inj = handoff.Select(os.Getenv)
	}
	tx, beginErr := inj.Begin(env)
	m := &handoff.MessageWriter{Tx: tx, Limit: s.databytes()}
	if beginErr != nil {
		m.Tx = nil // the body is read all the same, to answer after it
	} else {
		io.WriteString(tx, s.received(msgID))
	}
	err := readData(g.br, m)
	abort := func() {
		if m.Tx != nil {
			m.Tx.Abort()
		}
	}
	switch {
	case errors.Is(err, errBareLF) || errors.Is(err, errBareCR):
		// The rest is not parsed as commands (go-smtp issue #196): the
		// session ends after this reply.
		abort()
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", err)
		g.closeAfter = true
		return errBareLine
	case isTimeout(err):
		abort()
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", "timeout")
		g.closeAfter = true
		g.end("timeout")
		g.closing = false // the reply still goes out
		return errTimeout
	case err != nil:
		abort()
		s.log("warning", "refused", "msg", msgID, "reason", "disconnect", "err", err)
		g.end("disconnect")
		return errLocal
	}
	g.endData()
	switch {
	case beginErr != nil:
		s.log("warning", "refused", "msg", msgID, "code", 451, "err", beginErr)
		return errNoInjector
	case m.Over:
		abort()
		s.log("info", "refused", "msg", msgID, "code", 552, "reason", "databytes", "size", m.Size)
		return errTooBig
	case m.Hops.Looping():
		abort()
		s.log("info", "refused", "msg", msgID, "code", 554, "reason", "looping", "hops", m.Hops.Hops)
		return errLooping
	}
	code, err := tx.Commit()
	if code != qq.OK {
		r := queueReply(qq.Permanent(code), qq.Reply(code))
		s.log("warning", "refused", "msg", msgID, "code", r.Code, "qq", code, "err", err)
		return r
	}
	s.log("info", "accepted", "msg", msgID, "from", env.Sender, "rcpts", len(env.Recipients), "size", m.Size)
	return reply(250, "2.0.0", "ok "+msgID)
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

func (s *session) refuseRcpt(to string, r *smtp.SMTPError, reason string) error {
	s.log("info", "rcpt", "to", to, "result", "reject", "code", r.Code, "reason", reason)
	s.badRcpts++
	if s.cfg.MaxBadRcpt > 0 && s.badRcpts >= s.cfg.MaxBadRcpt {
		s.log("warning", "too_many_bad_rcpts", "count", s.badRcpts)
		return errTooManyBad // 421: the guard ends the session
	}
	return r
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

// takeDSN gives take (dsn.Mail.Param or dsn.Rcpt.Param) each of a MAIL
// or RCPT command's parameters, as the client wrote them: go-smtp has
// judged the others, and keeps one of two parameters of the same name,
// where RFC 3461 refuses the command.
func takeDSN(params string, take func(k, v string, hasValue bool) (bool, error)) error {
	for _, kv := range strings.Fields(params) {
		k, v, has := strings.Cut(kv, "=")
		if _, err := take(k, v, has); err != nil {
			return err
		}
	}
	return nil
}

// dsnReply is the refusal of a bad DSN parameter, saying which.
func dsnReply(err error) *smtp.SMTPError { return reply(501, "5.5.4", sanitizeText(err.Error())) }

// sanitizeText keeps a reply text to printable ASCII, at most 200 bytes:
// it quotes what the client sent.
func sanitizeText(t string) string {
	b := []byte(t)
	if len(b) > 200 {
		b = b[:200]
	}
	for i, c := range b {
		if c < 32 || c > 126 {
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

// handshake runs the TLS server handshake on the client's connection.
func (s *session) handshake() (*tls.Conn, error) {
	tc := tls.Server(s.raw, s.cfg.TLS)
	if s.cfg.Timeout > 0 {
		tc.SetDeadline(time.Now().Add(s.cfg.Timeout))
	}
	if err := tc.Handshake(); err != nil {
		s.log("warning", "tls", "result", "failed", "err", err)
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.log("info", "tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	s.tls = true
	return tc, nil
}
