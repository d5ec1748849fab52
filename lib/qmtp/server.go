package qmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gw/lib/control"
	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/inject"
	"gw/lib/logline"
	"gw/lib/mailbox"
	"gw/lib/qq"
	"gw/lib/ratelimit"
	"gw/lib/relay"
	"gw/lib/tcpserver"
)

// Defaults of the control files and limits of a session, documented in
// gw-qmtpd(8).
const (
	DefaultTimeout = 1200      // timeoutqmtpd, seconds: each read and write
	MaxSession     = time.Hour // qmail-qmtpd's alarm(3600) on the whole connection
	readBuffer     = 64 << 10
	// MaxPipelined bounds the packages of one connection whose messages
	// are with the injector at once; the next waits to be read.
	MaxPipelined = 64
	writeBuffer  = 4 << 10
)

// Config is what gw-qmtpd knows before a client connects.
type Config struct {
	Hostname  string             // control/me, for the log
	Databytes int64              // control/databytes; 0 = no limit
	Timeout   time.Duration      // control/timeoutqmtpd, per read and write
	Session   time.Duration      // the whole connection; 0 = MaxSession
	Domains   *relay.Domains     // rcpthosts + morercpthosts
	Limits    *ratelimit.Limiter // counts the client's RATE_ limits; nil: none counted
	Log       *logline.Logger
}

// Load reads gw-qmtpd's control files from dir. A file that exists but
// cannot be read is an error: the listener must not serve with a policy
// it did not fully read.
func Load(dir control.Dir, log *logline.Logger) (*Config, error) {
	c := &Config{Log: log, Session: MaxSession}
	me, ok, err := dir.Me()
	if err != nil {
		return nil, err
	}
	if !ok || me == "" {
		return nil, errors.New("control/me is missing: the host needs a name")
	}
	c.Hostname = me
	if c.Databytes, err = dir.Int("databytes", 0); err != nil {
		return nil, err
	}
	t, err := dir.Int("timeoutqmtpd", DefaultTimeout)
	if err != nil {
		return nil, err
	}
	c.Timeout = time.Duration(max(t, 1)) * time.Second
	if c.Domains, err = relay.Load(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// Responses, qmail-qmtpd's texts where it has one.
const (
	respTooBig      = "Dsorry, that message size exceeds my databytes limit (#5.3.4)"
	respBadSender   = "Dunacceptable sender (#5.1.7)"
	respBadRcpt     = "Dsorry, I can't handle that recipient (#5.1.3)"
	respRcptSyntax  = "Dsorry, that recipient address has bad syntax (#5.1.3)"
	respNoRelay     = "Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
	respRouted      = "Dsender-specified routing is not allowed (#5.7.1)"
	respTooManyRcpt = "Dtoo many recipients (#5.5.3)"
	respNoInjector  = "Zunable to exec qq (#4.3.0)"
	respNoSpace     = "Zinsufficient system storage (#4.3.1)"
	// A route loop between instances or hosts ends here, not at
	// queuelifetime: each hop adds a Received line (qmail's MAXHOPS).
	respLooping = "Dtoo many hops, this message is looping (#5.4.6)"
)

// session is one QMTP connection: packages one after the other.
type session struct {
	cfg  *Config
	cl   tcpserver.Client
	conn net.Conn // as the listener handed it over (tcpserver.Idle)
	br   *bufio.Reader
	bw   *bufio.Writer
	lr   *bufio.Reader // the recipient list, within its declared length
	id   string
	msgs int
}

var sessionSeq atomic.Uint64

func newSessionID() string {
	return strconv.FormatUint(uint64(time.Now().UnixNano())/1000, 36) + strconv.FormatUint(sessionSeq.Add(1)%1296, 36)
}

// Serve runs one QMTP session on conn for client cl and closes conn: the
// part standalone and tcpserver modes share.
func Serve(conn net.Conn, cfg *Config, cl tcpserver.Client) {
	s := &session{cfg: cfg, cl: cl, conn: conn, id: newSessionID()}
	limit := cfg.Session
	if limit <= 0 {
		limit = MaxSession
	}
	dc := &deadlineConn{Conn: conn, timeout: cfg.Timeout, end: time.Now().Add(limit)}
	s.bw = bufio.NewWriterSize(dc, writeBuffer)
	s.br = bufio.NewReaderSize(dc, readBuffer)
	s.lr = bufio.NewReaderSize(nil, 512)
	defer func() {
		if r := recover(); r != nil {
			s.log("alert", "panic", "err", fmt.Sprint(r))
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
	s.log("info", "connect", append(kv, "relay", cl.Relay)...)
	if s.limitConnect() {
		s.log("info", "end", "msgs", 0, "reason", "ratelimit")
		return
	}
	reason := s.run()
	s.log("info", "end", "msgs", s.msgs, "reason", reason)
}

func (s *session) log(sev, event string, kv ...any) {
	s.cfg.Log.Log(sev, event, append([]any{"sid", s.id}, kv...)...)
}

// run reads packages until the client closes. Packages are read one
// after the other, but their injections overlap: while one message waits
// for the injector's commit (an fsync, shared by gw-queued between the
// messages it commits together) the next is read and handed over.
// writeAnswers sends the responses in order, each once its message is
// durable or refused.
func (s *session) run() string {
	answers := make(chan *answer, MaxPipelined-1)
	written := make(chan string, 1)
	go s.writeAnswers(answers, written)
	reason := ""
	for reason == "" {
		// Waiting for the next package with none half read, the session
		// is idle: a shutdown ends it here (QMTP has no word for it; the
		// client sees the connection close between packages).
		idle := s.br.Buffered() == 0
		if idle && tcpserver.Idle(s.conn, true) {
			reason = "shutdown"
			break
		}
		_, err := s.br.Peek(1)
		if idle {
			tcpserver.Idle(s.conn, false)
		}
		if err != nil {
			reason = "quit"
			switch {
			case idle && tcpserver.Closing(s.conn):
				reason = "shutdown"
			case err != io.EOF:
				reason = readReason(err)
			}
			break
		}
		var a *answer
		a, reason = s.pkg()
		if a != nil {
			answers <- a
		}
	}
	// The packages answered before stay answered, whatever ended the
	// session: a K the client never reads makes it send the message twice.
	close(answers)
	if werr := <-written; werr != "" && reason == "quit" {
		reason = werr
	}
	return reason
}

// answer is the responses to one package: resp[i] for each recipient,
// final where resp[i] is "", known once done is closed (nil: known now).
type answer struct {
	resp  []string
	final string
	done  chan struct{}
}

// writeAnswers writes the answers in order as they become known. It
// flushes whenever the next one is not known yet, so no response waits
// for more input (the spec's deadlock rule).
func (s *session) writeAnswers(in <-chan *answer, written chan<- string) {
	failed := ""
	var buf []byte
	for {
		var a *answer
		var ok bool
		select {
		case a, ok = <-in:
		default:
			if err := s.bw.Flush(); err != nil && failed == "" {
				failed = "write_error"
			}
			a, ok = <-in
		}
		if !ok {
			break
		}
		if a.done != nil {
			select {
			case <-a.done:
			default:
				if err := s.bw.Flush(); err != nil && failed == "" {
					failed = "write_error"
				}
				<-a.done
			}
		}
		for _, r := range a.resp {
			if r == "" {
				r = a.final
			}
			buf = Append(buf[:0], r)
			s.bw.Write(buf)
		}
	}
	if err := s.bw.Flush(); err != nil && failed == "" {
		failed = "write_error"
	}
	written <- failed
}

func readReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, ErrTooLong):
		return "too_long"
	case errors.Is(err, ErrSyntax):
		return "protocol_error"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "disconnect"
	}
	return "read_error"
}

// pkg reads one package, hands its message to the injector while it
// arrives, and returns its answer, which the injector's commit may still
// have to complete. A non-empty reason ends the session (the package is
// then abandoned: nothing of it is queued).
func (s *session) pkg() (*answer, string) {
	s.msgs++
	msgID := s.id + "." + strconv.Itoa(s.msgs)
	n, err := ReadLength(s.br, MaxMessage)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: empty message netstring", ErrSyntax)
	}
	if err != nil {
		return nil, s.drop(msgID, nil, err)
	}
	enc, err := s.br.ReadByte()
	if err == nil && enc != '\n' && enc != '\r' {
		err = fmt.Errorf("%w: message encoding byte %q", ErrSyntax, enc)
	}
	if err != nil {
		return nil, s.drop(msgID, nil, noEOF(err))
	}
	noSpace := s.noSpace(msgID, n-1)
	var tx handoff.Tx
	txErr := errNoSpace
	switch {
	case noSpace:
	case s.cl.Injector == nil:
		txErr = errors.New("no injector chosen for this client")
	default:
		tx, txErr = handoff.BeginSession(s.cl.Injector, s.id, envelope.Envelope{})
	}
	if txErr == nil {
		if _, ok := tx.(handoff.Late); !ok {
			tx.Abort()
			tx, txErr = nil, errors.New("injector cannot take the envelope after the message")
		}
	}
	m := &handoff.MessageWriter{Tx: tx, Limit: s.databytes()}
	if tx != nil {
		io.WriteString(tx, s.received())
	}
	if enc == '\n' && m.Limit > 0 && n-1 > m.Limit {
		m.Over = true // known from the declared length: pass nothing on
	}
	if err := copyBody(s.br, m, n-1, enc == '\r'); err != nil {
		return nil, s.drop(msgID, tx, err)
	}
	m.End()
	if err := ReadComma(s.br); err != nil {
		return nil, s.drop(msgID, tx, err)
	}
	sender, long, err := ReadString(s.br, MaxAddress-1, MaxRecipientList)
	if err != nil {
		return nil, s.drop(msgID, tx, err)
	}
	// The sender is checked as gw-queue will check it (envelope's one
	// definition), so that a refusal is a D now, not a Z after the data.
	badSender := long || bytes.IndexByte(sender, 0) >= 0 || envelope.CheckAddress(string(sender)) != nil
	rcpts, resp, err := s.recipients()
	if err != nil {
		return nil, s.drop(msgID, tx, err)
	}
	if len(rcpts) == 0 {
		// qmail-qmtpd answers such a package with nothing, and its
		// client would wait for ever: closing tells it sooner.
		return nil, s.drop(msgID, tx, fmt.Errorf("%w: no recipients", ErrSyntax))
	}
	var accepted []string
	msgOver := ""
	if !badSender && !m.Over && !noSpace && tx != nil {
		msgOver = s.limitMsg()
	}
	for i, r := range rcpts {
		switch {
		case resp[i] != "":
		case msgOver != "":
			resp[i] = msgOver
		case badSender:
			resp[i] = respBadSender
		case m.Over:
			resp[i] = respTooBig
		case noSpace:
			resp[i] = respNoSpace
		case m.Hops.Looping():
			resp[i] = respLooping
		case tx == nil:
			resp[i] = respNoInjector
		default:
			if resp[i] = s.limitRcpt(); resp[i] == "" {
				accepted = append(accepted, r)
			}
		}
	}
	a := &answer{resp: resp}
	switch {
	case len(accepted) == 0:
		if tx != nil {
			tx.Abort()
		}
		reason := "no_recipients"
		switch {
		case msgOver != "":
			reason = "ratelimit"
		case badSender:
			reason = "bad_sender"
		case m.Over:
			reason = "databytes"
		case noSpace:
			reason = "no_space"
		case m.Hops.Looping():
			reason = "looping"
		case tx == nil:
			reason = "no_injector"
			s.log("warning", "injector", "msg", msgID, "err", txErr)
		}
		s.log("info", "refused", "msg", msgID, "reason", reason, "size", m.Size, "hops", m.Hops.Hops)
	default:
		env := envelope.Envelope{Sender: string(sender), Recipients: accepted}
		tx.(handoff.Late).SetEnvelope(env)
		a.done = make(chan struct{})
		go func() {
			defer close(a.done)
			code, err := tx.Commit()
			if code == qq.OK {
				// qmail's "qp": the queue id when the injector said it,
				// the client's key to the queue's log.
				qp, kv := msgID, []any{"msg", msgID}
				if qid := handoff.QID(tx); qid != "" {
					qp, kv = qid, append(kv, "qid", qid)
				}
				a.final = "Kok " + strconv.FormatInt(time.Now().Unix(), 10) + " qp " + qp
				kv = append(kv, "from", env.Sender, "rcpts", len(accepted), "size", m.Size)
				if id := m.ID.ID(); id != "" {
					kv = append(kv, "msgid", id)
				}
				kv = append(kv, m.TraceFields(s.cl.Peer)...)
				s.log("info", "accepted", kv...)
				return
			}
			a.final = "Z" + qq.Reply(code)
			if qq.Permanent(code) {
				a.final = "D" + qq.Reply(code)
			}
			s.log("warning", "refused", "msg", msgID, "qq", code, "err", err)
		}()
	}
	return a, ""
}

// drop abandons the package under way: the injector queues nothing.
func (s *session) drop(msgID string, tx handoff.Tx, err error) string {
	if tx != nil {
		tx.Abort()
	}
	reason := readReason(err)
	sev := "warning"
	if reason == "disconnect" {
		sev = "info"
	}
	s.log(sev, "dropped", "msg", msgID, "reason", reason, "err", err)
	return reason
}

// recipients reads the recipient list: a netstring of netstrings. It
// returns each address and its refusal ("" for none yet).
func (s *session) recipients() ([]string, []string, error) {
	n, err := ReadLength(s.br, MaxRecipientList)
	if err != nil {
		return nil, nil, noEOF(err)
	}
	lim := &io.LimitedReader{R: s.br, N: n}
	s.lr.Reset(lim)
	var rcpts, resp []string
	maxLen := int64(MaxAddress - 1 - len(s.cl.RelayAppend))
	for lim.N > 0 || s.lr.Buffered() > 0 {
		a, long, err := ReadString(s.lr, max(maxLen, 0), MaxRecipientList)
		if err != nil {
			if lim.N == 0 && errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: recipient beyond the list's length", ErrSyntax)
			}
			return nil, nil, err
		}
		addr := string(a)
		r := ""
		switch {
		case long || strings.IndexByte(addr, 0) >= 0:
			r = respBadRcpt
		case len(rcpts) >= envelope.MaxRecipients:
			r = respTooManyRcpt
		default:
			r = s.judge(addr)
			if s.cl.Relay {
				addr += s.cl.RelayAppend
			}
		}
		if r != "" {
			s.log("info", "rcpt", "to", addr, "result", "reject", "reason", r[1:])
		}
		rcpts, resp = append(rcpts, addr), append(resp, r)
	}
	if err := ReadComma(s.br); err != nil {
		return nil, nil, err
	}
	return rcpts, resp, nil
}

// judge refuses a recipient gw will not queue (the envelope's one
// definition: no control character, writable as an SMTP path), then, for
// a client without RELAYCLIENT, one relay control refuses.
func (s *session) judge(addr string) string {
	full := addr
	if s.cl.Relay {
		full += s.cl.RelayAppend
	}
	if full == "" || envelope.CheckAddress(full) != nil {
		return respRcptSyntax
	}
	if s.cl.Relay {
		return ""
	}
	return s.decide(addr)
}

// decide is gw-smtpd's relay control for a client without RELAYCLIENT,
// on the domain after the last '@' (QMTP addresses travel raw, unquoted).
func (s *session) decide(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	a := mailbox.Address{Local: addr}
	if at >= 0 {
		a.Local = addr[:at]
		a.Domain = strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")
		a.Literal = strings.HasPrefix(a.Domain, "[")
	}
	switch s.cfg.Domains.Decide(a) {
	case relay.Local:
		return ""
	case relay.Routed:
		return respRouted
	}
	return respNoRelay
}

func (s *session) databytes() int64 {
	if s.cl.HasDatabytes {
		return s.cl.Databytes
	}
	return s.cfg.Databytes
}

// received returns qmail-qmtpd's trace line:
//
//	Received: from HOST (info@IP)
//	  by LOCALHOST with QMTP; DATE
func (s *session) received() string {
	host := "unknown"
	if s.cl.HasRemoteHost {
		host = sanitize(s.cl.RemoteHost)
	}
	info := ""
	if s.cl.HasRemoteInfo {
		info = sanitize(s.cl.RemoteInfo) + "@"
	}
	local := s.cl.LocalHost
	if local == "" {
		local = s.cl.LocalIP
	}
	return "Received: from " + host + " (" + info + sanitize(orUnknown(s.cl.RemoteIP)) + ")\n  by " +
		sanitize(orUnknown(local)) + " with QMTP; " + inject.Date822(time.Now()) + "\n"
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// sanitize keeps what qmail's received.c keeps (letters, digits and
// ".@%+/=:-[]"); every other byte becomes '?'.
func sanitize(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".@%+/=:-[]", r)) {
			return r
		}
		return '?'
	}, v)
}

var cr = []byte{'\r'}

// copyBody copies n message bytes from br to w in the reader's buffer,
// never holding the message. With crlf (encoding #1), CR LF becomes LF and
// a CR not followed by LF is kept, as qmail-qmtpd stores it.
func copyBody(br *bufio.Reader, w io.Writer, n int64, crlf bool) error {
	pendingCR := false
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return noEOF(err)
			}
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		if !crlf {
			w.Write(b)
		} else {
			for len(b) > 0 {
				if pendingCR {
					pendingCR = false
					if b[0] != '\n' {
						w.Write(cr)
					}
				}
				i := bytes.IndexByte(b, '\r')
				if i < 0 {
					w.Write(b)
					break
				}
				w.Write(b[:i])
				pendingCR = true
				b = b[i+1:]
			}
			b, _ = br.Peek(int(min(int64(br.Buffered()), n)))
		}
		br.Discard(len(b))
		n -= int64(len(b))
	}
	if pendingCR {
		w.Write(cr)
	}
	return nil
}

// deadlineConn puts a fresh deadline on every read and write, never past
// the end of the session.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	end     time.Time
}

func (c *deadlineConn) deadline() time.Time {
	d := c.end
	if c.timeout > 0 {
		if t := time.Now().Add(c.timeout); t.Before(d) {
			d = t
		}
	}
	return d
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(c.deadline())
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(c.deadline())
	return c.Conn.Write(p)
}
