package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/dotstuff"
	"gw/lib/dsn"
	"gw/lib/mailbox"
	"gw/lib/route"
	"gw/lib/tlspolicy"
	"gw/lib/tracehdr"
)

// Limits on what a server may send back, so a hostile one cannot make the
// client allocate much. go-smtp's client refuses reply lines over 2000
// bytes itself; gw bounds what a server may send between two commands
// (deadlineConn).
const (
	MaxReplyLine  = 2000 // bytes of one reply line (RFC 5321: 512)
	MaxReplyLines = 100  // lines of one multi-line reply
)

// maxReplyBytes is what a server may send in answer to one command.
const maxReplyBytes = MaxReplyLine * MaxReplyLines

// Config is how an SMTP or LMTP session behaves.
type Config struct {
	Helo           string        // name for EHLO/LHLO (control/helohost, else me)
	ConnectTimeout time.Duration // timeoutconnect
	Timeout        time.Duration // timeoutremote: each read and each write
	// TLS is the configuration for opportunistic STARTTLS; nil means
	// STARTTLS with no certificate check (any encryption beats none, as
	// Postfix's "may" level). NoTLS turns STARTTLS off.
	TLS   *tls.Config
	NoTLS bool
	LMTP  bool
	// Policy is what TLS this server must get (tlsauth.go); nil is
	// "may", or "none" with NoTLS.
	Policy *TLSPolicy
	// TLSFailed, when set, hears of every TLS failure: gw-send logs it.
	TLSFailed func(*TLSFailure)
}

// smtpSession is an SMTP or LMTP session: a go-smtp client over a
// connection gw dialled and times itself.
type smtpSession struct {
	cfg  Config
	host string
	raw  net.Conn
	dc   *deadlineConn // raw, timed; TLS (when on) runs over it
	c    *smtp.Client
	kw   *ehloKeywords // what c reads and writes through
	tls  bool
	// state is the session's TLS as negotiated, with its policy level.
	state TLSState
	// tlsFailed is why this session is in the clear although the server
	// offered STARTTLS (nil if it is not): its temporary errors say so.
	tlsFailed *TLSFailure
	// needHello: go-smtp's Reset forgets the EHLO, and says it again
	// before the next command; Start does it explicitly, so that its
	// failure is a failure of the session and not a missing extension.
	needHello bool
	broken    bool
	stop      func() bool
}

// Dial opens an SMTP (or LMTP) session with h: connect, greeting, EHLO,
// STARTTLS when offered, EHLO again. ctx ending drops the connection,
// whatever it is doing.
//
// A server that offers STARTTLS but whose TLS fails (see TLSFailure)
// gets the mail in the clear on a new connection, as with Postfix's
// "may" level: opportunistic TLS never makes mail undeliverable. Each
// such failure goes to cfg.TLSFailed, and the temporary errors of the
// session in the clear that follows say so.
func Dial(ctx context.Context, h route.Host, cfg Config) (Session, error) {
	s, err := dialOnce(ctx, h, cfg, nil)
	var tf *TLSFailure
	if errors.As(err, &tf) && !cfg.NoTLS {
		cfg.reportTLS(tf)
		if cfg.policy().required() {
			// The policy wants TLS (or the certificate DNSSEC names):
			// never the clear. The mail waits for the server.
			return nil, err
		}
		cfg.NoTLS = true
		return dialOnce(ctx, h, cfg, tf)
	}
	return s, err
}

// dialOnce opens one session; tlsFailed is the TLS failure of an earlier
// connection that made this one go in the clear, if any.
func dialOnce(ctx context.Context, h route.Host, cfg Config, tlsFailed *TLSFailure) (Session, error) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h.Addr.String(), strconv.Itoa(h.Port)))
	if err != nil {
		return nil, &ConnError{Host: h.String(), Err: err, Stage: StageConnect, Enhanced: StatusNoAnswer, Note: tlsFailed.note()}
	}
	s := &smtpSession{cfg: cfg, host: h.String(), raw: raw, tlsFailed: tlsFailed}
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
	s.dc = &deadlineConn{Conn: raw, timeout: cfg.Timeout, limit: maxReplyBytes}
	if err := s.open(h.Name); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// newClient puts a go-smtp client on conn. Its own deadlines (a whole
// command, and none while the body is written) are overridden by
// deadlineConn's, one a read or write.
func (s *smtpSession) newClient(conn net.Conn) {
	s.kw = &ehloKeywords{Conn: conn}
	if s.cfg.LMTP {
		s.c = smtp.NewClientLMTP(s.kw)
	} else {
		s.c = smtp.NewClient(s.kw)
	}
	if s.cfg.Timeout > 0 {
		s.c.CommandTimeout = s.cfg.Timeout
		s.c.SubmissionTimeout = s.cfg.Timeout
	}
}

// hello says EHLO (LHLO), with the keywords of the reply in upper case.
func (s *smtpSession) hello() error {
	s.kw.armed = true
	return s.c.Hello(s.cfg.Helo)
}

func (s *smtpSession) open(name string) error {
	// gw reads the greeting itself, so that a refusal there is told from
	// one of EHLO (go-smtp's client reads both in one call); the client
	// gets a copy of a good one, and whatever came after it.
	br := bufio.NewReader(s.dc)
	if err := s.greeting(br); err != nil {
		return err
	}
	rest, _ := br.Peek(br.Buffered())
	s.newClient(&greetedConn{Conn: s.dc, greeting: strings.NewReader("220 " + s.host + "\r\n" + string(rest))})
	if err := s.hello(); err != nil {
		return s.fail(err, StageHello)
	}
	p := s.cfg.policy()
	s.state.Level = p.Level
	if s.cfg.NoTLS || s.cfg.LMTP || p.Level == tlspolicy.None {
		return nil
	}
	if ok, _ := s.c.Extension("STARTTLS"); !ok {
		if p.required() {
			return s.tlsFailure("starttls", "STARTTLS not offered, and level "+p.Level.String()+" requires TLS", StatusNoTLS)
		}
		return nil
	}
	// go-smtp starts TLS only from NewClientStartTLS, which says EHLO as
	// "localhost" first and fails when STARTTLS is not offered: gw says
	// STARTTLS itself (starttls.go), after go-smtp's EHLO with the
	// instance's name.
	return s.startTLS(name)
}

// greeting reads the server's greeting: 220 opens the session; a 4xx or
// 5xx refuses it (a *Reply, Temporary either way); anything else is a
// server that does not speak SMTP as it should (a *ConnError).
func (s *smtpSession) greeting(br *bufio.Reader) error {
	code, msg, err := textproto.NewReader(br).ReadResponse(0)
	var pe textproto.ProtocolError
	switch {
	case errors.As(err, &pe):
		s.broken = true
		return &ConnError{Host: s.host, Err: fmt.Errorf("garbled reply: %w", err), Stage: StageGreeting, Enhanced: StatusBadProto}
	case err != nil:
		return s.fail(err, StageGreeting)
	case code == 220:
		return nil
	}
	return s.refused(toSMTPError(code, msg), StageGreeting)
}

// toSMTPError is a reply as go-smtp's client gives it, the enhanced
// code taken off its lines.
func toSMTPError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: msg}
	first, _, _ := strings.Cut(msg, "\n")
	if f := strings.Fields(first); len(f) > 0 {
		var ec smtp.EnhancedCode
		if n, _ := fmt.Sscanf(f[0], "%d.%d.%d", &ec[0], &ec[1], &ec[2]); n == 3 && ec[0] == code/100 {
			se.EnhancedCode = ec
			// RFC 2034: the code begins every line
			se.Message = strings.TrimSpace(strings.ReplaceAll(strings.TrimPrefix(msg, f[0]), "\n"+f[0]+" ", "\n"))
		}
	}
	return se
}

// ehloKeywords puts the keywords of an EHLO (LHLO) reply in upper case:
// they are case-insensitive (RFC 5321 2.4), but go-smtp's client looks
// them up as it got them and its own look-ups (Extension's included) are
// in upper case, so that "starttls", "size 1000" or "smtputf8" would count
// as not offered. armed is set before the client says EHLO: the reply to
// the next write is the one rewritten, from its second line on, each
// line's first word.
type ehloKeywords struct {
	net.Conn
	armed bool // the next write is EHLO or LHLO
	on    bool // reading its reply
	first bool // in the reply's first line (the server's name)
	col   int  // bytes into the current line
	word  bool // in the line's first word
	last  bool // the current line is the reply's last
	// ahead counts what came in the same read after the reply's end:
	// bytes the server sent unasked (see startTLS).
	ahead int
}

func (k *ehloKeywords) Write(p []byte) (int, error) {
	if k.armed {
		k.armed = false
		k.on, k.first, k.col, k.word, k.last, k.ahead = true, true, 0, true, false, 0
	}
	return k.Conn.Write(p)
}

func (k *ehloKeywords) Read(p []byte) (int, error) {
	n, err := k.Conn.Read(p)
	for i := 0; i < n && k.on; i++ {
		c := p[i]
		switch {
		case c == '\n':
			if k.last || k.col <= 3 {
				k.on = false
				k.ahead = n - 1 - i
			}
			k.first, k.col, k.word, k.last = false, 0, true, false
			continue
		case k.col == 3:
			k.last = c != '-'
		case k.col > 3 && k.word && !k.first:
			if c == ' ' || c == '\r' {
				k.word = false
			} else if 'a' <= c && c <= 'z' {
				p[i] = c - 'a' + 'A'
			}
		}
		k.col++
	}
	return n, err
}

// greetedConn replays a greeting before what its connection reads.
type greetedConn struct {
	net.Conn
	greeting *strings.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if g.greeting.Len() > 0 {
		return g.greeting.Read(p)
	}
	return g.Conn.Read(p)
}

// fail turns an error of go-smtp's client at stage into gw's: a server's
// reply into a *Reply, anything else (network trouble, timeouts, a
// garbled reply) into a *ConnError that leaves the session unusable.
func (s *smtpSession) fail(err error, stage Stage) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return s.refused(se, stage)
	}
	s.broken = true
	return &ConnError{Host: s.host, Err: err, Stage: stage, Note: s.tlsFailed.note()}
}

// refused turns a reply at stage into an error for the caller, and marks
// the session unusable when the server is closing (421). A code that no
// refusal can have (650, 354 to MAIL) is not taken as the server's
// verdict: the session is dropped as broken, a temporary failure of the
// host, and the next host is tried.
func (s *smtpSession) refused(se *smtp.SMTPError, stage Stage) error {
	if !ValidCode(se.Code) {
		s.broken = true
		return &ConnError{Host: s.host, Stage: stage, Enhanced: StatusBadProto,
			Err: fmt.Errorf("invalid reply %q", fmt.Sprintf("%d %s", se.Code, oneLine(se.Message)))}
	}
	if se.Code == 421 {
		s.broken = true
	}
	rp := &Reply{Code: se.Code, Text: replyText(se), Host: s.host, Stage: stage}
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		rp.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	if rp.Temporary() {
		// What gw-qstat shows as the last error: a deferral in the
		// clear is seen with the TLS failure that led to it, one over
		// TLS with what TLS it was.
		rp.Note = s.tlsFailed.note()
		if s.tls {
			rp.Note = "over " + s.state.String()
		}
	}
	return rp
}

// replyText is a reply's text on one line, enhanced code first.
func replyText(se *smtp.SMTPError) string {
	text := oneLine(se.Message)
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		text = strings.TrimSpace(fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], text))
	}
	return text
}

// badAddress is a stored address no SMTP command can carry (mailbox.Path
// refused it): it fails, never rewritten into an address it is not.
type badAddress struct {
	addr   string
	sender bool
	err    error
}

func (e *badAddress) Error() string { return e.Reason() + " (#" + e.Status() + ")" }

// Reason is the failure without its status.
func (e *badAddress) Reason() string {
	return fmt.Sprintf("%s address %q cannot be written as an SMTP path: %v", e.role(), e.addr, e.err)
}

// Status is the failure's enhanced status code.
func (e *badAddress) Status() string {
	if e.sender {
		return "5.1.7"
	}
	return "5.1.3"
}

// Unwritable returns the permanent failure of stored address addr when no
// SMTP path can carry it (mailbox.Path), nil otherwise: gw-send fails such
// a recipient (5.1.3), or the whole message for such a sender (5.1.7),
// before it looks for a host. An empty recipient is the null path, a
// sender's alone.
func Unwritable(addr string, sender bool) error {
	_, err := mailbox.Path(addr)
	if err == nil && addr == "" && !sender {
		err = mailbox.ErrNoDomain
	}
	if err != nil {
		return &badAddress{addr: addr, sender: sender, err: err}
	}
	return nil
}

func (e *badAddress) role() string {
	if e.sender {
		return "sender"
	}
	return "recipient"
}

func (e *badAddress) Temporary() bool { return false }

// WantsTrace reports whether the server offered XGWTRACE: it is a gw
// instance that takes the X-Gw-Trace field (tracehdr).
func (s *smtpSession) WantsTrace() bool {
	ok, _ := s.c.Extension(tracehdr.Keyword)
	return ok
}

func (s *smtpSession) TLS() bool          { return s.tls }
func (s *smtpSession) TLSState() TLSState { return s.state }
func (s *smtpSession) Reusable() bool     { return !s.broken }

// OffersDSN reports DSN in the server's EHLO (LHLO) reply.
func (s *smtpSession) OffersDSN() bool {
	ok, _ := s.c.Extension("DSN")
	return ok
}

// rcptOptions are the RCPT parameters for a recipient's DSN request, nil
// when there are none or the server takes none.
func rcptOptions(s *smtpSession, dr dsn.Rcpt) *smtp.RcptOptions {
	if !s.OffersDSN() {
		return nil
	}
	return dr.RcptOptions()
}

func (s *smtpSession) Close() error {
	if !s.broken {
		s.c.Quit()
	}
	s.Kill()
	return nil
}

func (s *smtpSession) Kill() {
	s.broken = true
	s.stop()
	s.raw.Close()
}

// reset ends a transaction with RSET; a session that cannot is dropped.
func (s *smtpSession) reset() {
	if err := s.c.Reset(); err != nil {
		s.Kill()
		return
	}
	s.needHello = true
}

// Start sends MAIL FROM and waits for its reply: go-smtp's client does
// not pipeline.
func (s *smtpSession) Start(sender string, size int64, utf8 bool, dm dsn.Mail) (Delivery, error) {
	return s.start(sender, size, utf8, dm, false)
}

// startRequireTLS is Start with REQUIRETLS on MAIL (requiretls.go).
func (s *smtpSession) startRequireTLS(sender string, size int64, utf8 bool, dm dsn.Mail) (Delivery, error) {
	return s.start(sender, size, utf8, dm, true)
}

func (s *smtpSession) start(sender string, size int64, utf8 bool, dm dsn.Mail, requireTLS bool) (Delivery, error) {
	if s.broken {
		return nil, &ConnError{Host: s.host, Err: errors.New("session is closed")}
	}
	// The path as the next hop must read it: quoted where the stored
	// local part is no dot-atom, so that nothing in it becomes a parameter.
	if err := Unwritable(sender, true); err != nil {
		return nil, err
	}
	from, _ := mailbox.Path(sender)
	if s.needHello {
		// A refusal here is about the session, not the message: the
		// session is dropped and gw-send carries the message over a new
		// one, as for a session closed while idle.
		if err := s.hello(); err != nil {
			s.Kill()
			return nil, &ConnError{Host: s.host, Err: err, Stage: StageHello}
		}
		s.needHello = false
	}
	if utf8 {
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			return nil, &Reply{Code: 553, Enhanced: "5.6.7", Own: true, Text: "5.6.7 server does not offer SMTPUTF8, needed for this message", Host: s.host}
		}
	}
	if max, ok := s.c.MaxMessageSize(); ok && max > 0 && size > int64(max) {
		return nil, &Reply{Code: 552, Enhanced: "5.3.4", Own: true, Text: fmt.Sprintf("5.3.4 message of %d bytes is over the SIZE %d the server announced", size, max), Host: s.host}
	}
	if requireTLS {
		if err := s.canRequireTLS(); err != nil {
			return nil, err
		}
	}
	opts := &smtp.MailOptions{Size: size, UTF8: utf8, RequireTLS: requireTLS}
	if ok, _ := s.c.Extension("8BITMIME"); ok {
		opts.Body = smtp.Body8BitMIME // go-smtp says BODY=8BITMIME whenever offered
	}
	if s.OffersDSN() {
		dm.MailOptions(opts)
	}
	if err := s.c.Mail(from, opts); err != nil {
		return nil, s.fail(err, StageMail)
	}
	return &smtpDelivery{s: s, size: size}, nil
}

// smtpDelivery is one SMTP or LMTP transaction, in lock step: each
// command's reply is read before the next command goes out.
type smtpDelivery struct {
	s        *smtpSession
	size     int64 // as the queue recorded it
	rcpts    []string
	outcome  []error // per AddRcpt call
	accepted []int   // indexes into outcome of accepted recipients
	dupOf    []int   // LMTP: per AddRcpt call, the earlier call with the same address, or -1
	err      error   // the session failed: every later step fails with it
	w        *smtp.DataCommand
	inData   bool
	noData   bool // every recipient refused: no DATA was sent
	done     bool
	// okReplies: per AddRcpt call, the server's reply to the final dot
	// when it took the message, so that the log keeps the next hop's
	// "queued as" for following the message there.
	okReplies []string
}

// Replies returns, per AddRcpt call, the reply that took the message for
// that recipient ("250 2.0.0 Ok: queued as X"), or "" where none did.
func (d *smtpDelivery) Replies() []string { return d.okReplies }

// AddRcpt keeps the path it writes in rcpts: go-smtp keys LMTP's replies
// by it.
func (d *smtpDelivery) AddRcpt(to string, dr dsn.Rcpt) error {
	i := len(d.outcome)
	bad := Unwritable(to, false)
	path := to
	if bad == nil {
		path, _ = mailbox.Path(to)
	}
	d.rcpts = append(d.rcpts, path)
	d.outcome = append(d.outcome, nil)
	d.dupOf = append(d.dupOf, -1)
	if d.err != nil {
		d.outcome[i] = d.err
		return d.err
	}
	if bad != nil {
		d.outcome[i] = bad
		return bad
	}
	to = path
	if d.s.cfg.LMTP {
		// go-smtp keys LMTP's per-recipient replies by address: an
		// address twice in one transaction would lose a reply. It goes
		// once, and both calls get its outcome.
		for j := 0; j < i; j++ {
			if d.rcpts[j] == to {
				d.dupOf[i] = j
				d.outcome[i] = d.outcome[j]
				return d.outcome[i]
			}
		}
	}
	if err := d.s.c.Rcpt(to, rcptOptions(d.s, dr)); err != nil {
		err = d.s.fail(err, StageRcpt)
		d.outcome[i] = err
		if d.s.broken {
			d.err = err
		}
		return err
	}
	d.accepted = append(d.accepted, i)
	return nil
}

// Body sends DATA and then the message. gw writes the message's lines
// to the connection itself (dotstuff.Writer: CRLF line ends, dot-stuffing,
// lone CR to a space) in large blocks, and only the last line end through
// go-smtp's DotWriter, byte by byte: the writer stands at a line end then,
// and Commit's close writes the final dot. The DotWriter's bufio.Writer
// was flushed with the DATA command, so the two never interleave.
// It does not end the data: Commit does.
func (d *smtpDelivery) Body(r io.Reader) error {
	if d.err != nil {
		return d.err
	}
	if len(d.accepted) == 0 {
		d.noData = true // Commit reports the refusals
		return nil
	}
	if ok, _ := d.s.c.Extension("8BITMIME"); !ok {
		// Before DATA: a message that cannot be made 7-bit fails with
		// the transaction reset, not with a connection dropped.
		seven, err := d.s.sevenBit(r, d.size)
		if err != nil {
			return err
		}
		r = seven
	}
	w, err := d.s.c.Data()
	if err != nil {
		return d.s.fail(err, StageData)
	}
	d.w = w
	d.inData = true
	bufs := dataBufs.Get().(*dataBuffers)
	defer dataBufs.Put(bufs)
	dw := dotstuff.NewWriterBuf(d.s.kw, bufs.out)
	buf := bufs.in
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := dw.Write(buf[:n]); err != nil {
				d.s.Kill()
				return &ConnError{Host: d.s.host, Err: err, Stage: StageData}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Never send the final dot: drop the connection instead, so
			// the receiver discards the partial message.
			d.s.Kill()
			return fmt.Errorf("reading the stored message: %w", rerr)
		}
	}
	err = dw.Close()
	if err == nil {
		_, err = io.WriteString(w, "\n")
	}
	if err != nil {
		d.s.Kill()
		return &ConnError{Host: d.s.host, Err: err, Stage: StageData}
	}
	return nil
}

// dataBuffers are what Body reads the stored message into and gathers
// its wire form in; kept in dataBufs for the next message, so that a
// delivery does not allocate (and zero) them.
type dataBuffers struct{ in, out []byte }

var dataBufs = sync.Pool{New: func() any {
	return &dataBuffers{in: make([]byte, 64<<10), out: make([]byte, 0, dotstuff.BufSize)}
}}

// DataSent reports whether the message body began to go out: from then
// on a lost connection may have delivered it, so gw-send must not send it
// again at once (over another connection or host).
func (d *smtpDelivery) DataSent() bool { return d.inData }

func isReply(err error) bool {
	var rp *Reply
	return errors.As(err, &rp)
}

// Commit ends the data and reads the verdict: SMTP's one reply is the
// whole message's (an error here applies to every accepted recipient);
// LMTP's come one an accepted recipient.
func (d *smtpDelivery) Commit() ([]error, error) {
	if d.err != nil {
		return nil, d.err
	}
	d.done = true
	res := make([]error, len(d.outcome))
	copy(res, d.outcome)
	if d.noData {
		d.s.reset()
		return res, nil
	}
	d.okReplies = make([]string, len(d.outcome))
	if !d.s.cfg.LMTP {
		resp, err := d.w.CloseWithResponse()
		if err != nil {
			return nil, d.s.fail(err, StageDot)
		}
		for _, i := range d.accepted {
			d.okReplies[i] = okReply(resp)
		}
		for i, j := range d.dupOf {
			if j >= 0 {
				d.okReplies[i] = d.okReplies[j]
			}
		}
		return res, nil
	}
	// LMTP (RFC 2033 4.2): a reply an accepted recipient, in RCPT order.
	d.s.dc.limit = maxReplyBytes * len(d.accepted)
	ok, err := d.w.CloseWithLMTPResponse()
	d.s.dc.limit = maxReplyBytes
	perRcpt, lost := lmtpErrors(err)
	var lostErr error
	if lost != nil {
		lostErr = d.s.fail(lost, StageDot) // the replies that did not come
	}
	for _, i := range d.accepted {
		a := d.rcpts[i]
		switch {
		case ok[a] != nil:
			res[i] = nil
			d.okReplies[i] = okReply(ok[a])
		case perRcpt[a] != nil:
			res[i] = d.s.refused(perRcpt[a], StageDot)
		case lostErr != nil:
			res[i] = lostErr
		default:
			d.s.broken = true
			res[i] = &ConnError{Host: d.s.host, Err: errors.New("no LMTP reply for this recipient"), Stage: StageDot}
		}
	}
	for i, j := range d.dupOf {
		if j >= 0 {
			res[i] = res[j]
			d.okReplies[i] = d.okReplies[j]
		}
	}
	return res, nil
}

// okReply is a success reply on one line as the log shows it: go-smtp
// keeps only the text of a 250 (the code is the one it waited for).
func okReply(r *smtp.DataResponse) string {
	if r == nil {
		return ""
	}
	return "250 " + oneLine(r.StatusText)
}

// lmtpErrors splits CloseWithLMTPResponse's error into the recipients'
// refusals and the failure (of the connection) that cut the replies
// short, if any.
func lmtpErrors(err error) (smtp.LMTPDataError, error) {
	switch e := err.(type) {
	case nil:
		return nil, nil
	case smtp.LMTPDataError:
		return e, nil
	}
	var per smtp.LMTPDataError
	if !errors.As(err, &per) {
		return nil, err
	}
	// errors.Join(failure, refusals)
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return per, j.Unwrap()[0]
	}
	return per, err
}

func (d *smtpDelivery) Abort() {
	if d.done {
		return
	}
	d.done = true
	if d.inData || d.s.broken {
		d.s.Kill()
		return
	}
	d.s.reset()
}

// deadlineConn gives every Read and Write its own deadline, so that no
// step of a session can hang: go-smtp's client sets none while the body
// is written; RFC 5321 4.5.3.2 wants one on every block. The deadlines
// go-smtp sets itself are ignored (with a timeout of 0 they apply).
//
// It also bounds what the server may send between two writes of the
// client (limit bytes): go-smtp reads a multi-line reply of any length.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	limit   int // bytes the server may send between two writes
	read    int
}

var errTooMuch = errors.New("the server sent too much without being asked")

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.read >= c.limit {
		return 0, errTooMuch
	}
	if len(p) > c.limit-c.read {
		p = p[:c.limit-c.read]
	}
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.read = 0
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if c.timeout > 0 {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	if c.timeout > 0 {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	if c.timeout > 0 {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}
