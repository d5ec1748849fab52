package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"gw/lib/route"
)

// Limits on what a server may send back, so a hostile one cannot make the
// client allocate much.
const (
	MaxReplyLine  = 2000 // bytes of one reply line (RFC 5321: 512)
	MaxReplyLines = 100  // lines of one multi-line reply
)

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
}

// smtpSession is an SMTP or LMTP session.
type smtpSession struct {
	cfg    Config
	host   string
	raw    net.Conn
	conn   net.Conn // raw, or the TLS connection over it
	r      *bufio.Reader
	w      *bufio.Writer
	ext    map[string]string
	tls    bool
	broken bool
	stop   func() bool
}

// Dial opens an SMTP (or LMTP) session with h: connect, greeting, EHLO,
// STARTTLS when offered, EHLO again. ctx ending drops the connection,
// whatever it is doing.
func Dial(ctx context.Context, h route.Host, cfg Config) (Session, error) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h.Addr.String(), strconv.Itoa(h.Port)))
	if err != nil {
		return nil, &ConnError{Host: h.String(), Err: err}
	}
	s := &smtpSession{cfg: cfg, host: h.String(), raw: raw}
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
	s.setConn(&deadlineConn{Conn: raw, timeout: cfg.Timeout})
	if err := s.open(h.Name); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

func (s *smtpSession) setConn(c net.Conn) {
	s.conn = c
	s.r = bufio.NewReaderSize(c, 4096)
	s.w = bufio.NewWriterSize(c, 32<<10)
}

func (s *smtpSession) open(name string) error {
	if rp, err := s.reply(); err != nil {
		return err
	} else if rp.Code != 220 {
		return s.refused(rp)
	}
	if err := s.hello(); err != nil {
		return err
	}
	if _, ok := s.ext["STARTTLS"]; !ok || s.cfg.NoTLS || s.cfg.LMTP {
		return nil
	}
	rp, err := s.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if rp.Code != 220 {
		return nil // offered but refused: go on in the clear
	}
	cfg := s.cfg.TLS
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" && route.Domain("x@"+name) != "" && !strings.HasPrefix(name, "[") {
		cfg.ServerName = name
	}
	tc := tls.Client(&deadlineConn{Conn: s.raw, timeout: s.cfg.Timeout}, cfg)
	if err := tc.Handshake(); err != nil {
		return &ConnError{Host: s.host, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	// A fresh reader drops whatever the server sent before the handshake
	// (the response-injection class of RFC 3207 bugs).
	s.setConn(tc)
	s.tls = true
	return s.hello()
}

func (s *smtpSession) hello() error {
	verb := "EHLO"
	if s.cfg.LMTP {
		verb = "LHLO"
	}
	rp, err := s.cmd(verb + " " + s.cfg.Helo)
	if err != nil {
		return err
	}
	if rp.Code != 250 && !s.cfg.LMTP {
		if rp, err = s.cmd("HELO " + s.cfg.Helo); err != nil {
			return err
		}
		s.ext = map[string]string{}
	} else {
		s.ext = map[string]string{}
		for _, l := range rp.lines[1:] {
			k, v, _ := strings.Cut(l, " ")
			s.ext[strings.ToUpper(k)] = v
		}
	}
	if rp.Code != 250 {
		return s.refused(rp)
	}
	return nil
}

// reply is one server reply as read.
type reply struct {
	Code  int
	lines []string // text after the code, a line each
}

func (rp reply) text() string { return oneLine(strings.Join(rp.lines, "\n")) }

// refused turns a reply into an error for the caller, and marks the
// session unusable when the server is closing (421).
func (s *smtpSession) refused(rp reply) error {
	if rp.Code == 421 {
		s.broken = true
	}
	return &Reply{Code: rp.Code, Text: rp.text(), Host: s.host}
}

func (s *smtpSession) reply() (reply, error) {
	var rp reply
	for n := 0; ; n++ {
		line, err := s.readLine()
		if err != nil {
			s.broken = true
			return rp, &ConnError{Host: s.host, Err: err}
		}
		if len(line) < 3 || n >= MaxReplyLines {
			s.broken = true
			return rp, &ConnError{Host: s.host, Err: fmt.Errorf("bad reply %q", line)}
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || n > 0 && code != rp.Code {
			s.broken = true
			return rp, &ConnError{Host: s.host, Err: fmt.Errorf("bad reply %q", line)}
		}
		rp.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 4 {
			rp.lines = append(rp.lines, line[4:])
		} else {
			rp.lines = append(rp.lines, "")
		}
		if !more {
			return rp, nil
		}
	}
}

func (s *smtpSession) readLine() (string, error) {
	var b []byte
	for {
		frag, more, err := s.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, frag...)
		if len(b) > MaxReplyLine {
			return "", errors.New("reply line too long")
		}
		if !more {
			return string(b), nil
		}
	}
}

func (s *smtpSession) send(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("line break in command %q", line)
	}
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	return nil
}

func (s *smtpSession) flush() error {
	if err := s.w.Flush(); err != nil {
		s.broken = true
		return &ConnError{Host: s.host, Err: err}
	}
	return nil
}

func (s *smtpSession) cmd(line string) (reply, error) {
	if err := s.send(line); err != nil {
		return reply{}, err
	}
	if err := s.flush(); err != nil {
		return reply{}, err
	}
	return s.reply()
}

func (s *smtpSession) TLS() bool      { return s.tls }
func (s *smtpSession) Reusable() bool { return !s.broken }

func (s *smtpSession) Close() error {
	if !s.broken {
		s.cmd("QUIT")
	}
	s.Kill()
	return nil
}

func (s *smtpSession) Kill() {
	s.broken = true
	s.stop()
	s.raw.Close()
}

// Start sends MAIL FROM; RCPTs are pipelined after it when the server
// offers PIPELINING, and their replies read at Body.
func (s *smtpSession) Start(sender string, size int64, utf8 bool) (Delivery, error) {
	if s.broken {
		return nil, &ConnError{Host: s.host, Err: errors.New("session is closed")}
	}
	cmd := "MAIL FROM:<" + sender + ">"
	if _, ok := s.ext["SIZE"]; ok && size > 0 {
		cmd += " SIZE=" + strconv.FormatInt(size, 10)
	}
	if _, ok := s.ext["8BITMIME"]; ok {
		cmd += " BODY=8BITMIME"
	}
	if utf8 {
		if _, ok := s.ext["SMTPUTF8"]; !ok {
			return nil, &Reply{Code: 553, Text: "5.6.7 server does not offer SMTPUTF8, needed for this message", Host: s.host}
		}
		cmd += " SMTPUTF8"
	}
	_, pipe := s.ext["PIPELINING"]
	d := &smtpDelivery{s: s, pipe: pipe}
	if err := s.send(cmd); err != nil {
		return nil, err
	}
	if !pipe {
		if err := d.checkMail(); err != nil {
			return nil, err
		}
	} else {
		d.mailPending = true
	}
	return d, nil
}

// smtpDelivery is one SMTP transaction. With pipelining, MAIL and the
// RCPTs are sent as they come and their replies read together before
// DATA; AddRcpt then returns nil and the refusals come out of Commit.
type smtpDelivery struct {
	s           *smtpSession
	pipe        bool
	mailPending bool
	mailErr     error
	pending     int     // RCPTs sent, replies not read
	outcome     []error // per AddRcpt call
	accepted    []int   // indexes into outcome of accepted recipients
	inData      bool
	noData      bool // every recipient refused: no DATA was sent
	done        bool
}

func (d *smtpDelivery) checkMail() error {
	d.mailPending = false
	if err := d.s.flush(); err != nil {
		return err
	}
	rp, err := d.s.reply()
	if err != nil {
		return err
	}
	if rp.Code != 250 {
		d.mailErr = d.s.refused(rp)
		return d.mailErr
	}
	return nil
}

func (d *smtpDelivery) AddRcpt(to string) error {
	if err := d.s.send("RCPT TO:<" + to + ">"); err != nil {
		return err
	}
	d.outcome = append(d.outcome, nil)
	if d.pipe {
		d.pending++
		return nil
	}
	return d.readRcpt(len(d.outcome) - 1)
}

func (d *smtpDelivery) readRcpt(i int) error {
	if err := d.s.flush(); err != nil {
		return err
	}
	rp, err := d.s.reply()
	if err != nil {
		return err
	}
	if rp.Code != 250 && rp.Code != 251 {
		d.outcome[i] = d.s.refused(rp)
		return d.outcome[i]
	}
	d.accepted = append(d.accepted, i)
	return nil
}

func (d *smtpDelivery) Body(r io.Reader) error {
	// With pipelining DATA ends the group of MAIL and RCPTs (RFC 2920
	// 3.1): one round trip for the whole envelope.
	dataPending := false
	if d.pipe && (d.mailPending || d.pending > 0) {
		if err := d.s.send("DATA"); err != nil {
			return err
		}
		dataPending = true
	}
	if d.mailPending {
		if err := d.checkMail(); err != nil {
			// The RCPT (and DATA) replies still come; read them so the
			// session stays in step.
			for i := len(d.outcome) - d.pending; i < len(d.outcome); i++ {
				if _, err2 := d.s.reply(); err2 != nil {
					return err2
				}
			}
			d.pending = 0
			if dataPending {
				if err2 := d.skipData(); err2 != nil {
					return err2
				}
			}
			return err
		}
	}
	for i := len(d.outcome) - d.pending; i < len(d.outcome); i++ {
		if err := d.readRcpt(i); err != nil && !isReply(err) {
			return err
		}
	}
	d.pending = 0
	if len(d.accepted) == 0 {
		d.noData = true // Commit reports the refusals
		if dataPending {
			return d.skipData()
		}
		return nil
	}
	var rp reply
	var err error
	if dataPending {
		rp, err = d.s.reply()
	} else {
		rp, err = d.s.cmd("DATA")
	}
	if err != nil {
		return err
	}
	if rp.Code != 354 {
		return d.s.refused(rp)
	}
	d.inData = true
	dw := newDotWriter(d.s.w)
	if _, err := io.Copy(dw, r); err != nil {
		// Never send the final dot: drop the connection instead, so the
		// receiver discards the partial message.
		d.s.Kill()
		var ce *ConnError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("reading the stored message: %w", err)
	}
	if err := dw.Close(); err != nil {
		d.s.Kill()
		return &ConnError{Host: d.s.host, Err: err}
	}
	return nil
}

// skipData reads the reply to a pipelined DATA that must carry nothing
// (MAIL or every RCPT was refused). A server that says 354 all the same
// gets an empty message, ended at once, and its verdict is ignored.
func (d *smtpDelivery) skipData() error {
	rp, err := d.s.reply()
	if err != nil || rp.Code != 354 {
		return err
	}
	if err := d.s.send("."); err != nil {
		return err
	}
	if err := d.s.flush(); err != nil {
		return err
	}
	_, err = d.s.reply()
	return err
}

// DataSent reports whether the message body began to go out: from then
// on a lost connection may have delivered it, so gw-send must not send it
// again at once (over another connection or host).
func (d *smtpDelivery) DataSent() bool { return d.inData }

func isReply(err error) bool {
	var rp *Reply
	return errors.As(err, &rp)
}

func (d *smtpDelivery) Commit() ([]error, error) {
	if err := d.s.flush(); err != nil {
		return nil, err
	}
	d.done = true
	res := make([]error, len(d.outcome))
	copy(res, d.outcome)
	if d.noData {
		if rp, err := d.s.cmd("RSET"); err != nil || rp.Code != 250 {
			d.s.Kill()
		}
		return res, nil
	}
	if !d.s.cfg.LMTP {
		rp, err := d.s.reply()
		if err != nil {
			return nil, err
		}
		if rp.Code != 250 {
			return nil, d.s.refused(rp)
		}
		return res, nil
	}
	// LMTP: one reply per accepted recipient, in RCPT order (RFC 2033 4.2).
	for _, i := range d.accepted {
		rp, err := d.s.reply()
		if err != nil {
			return nil, err
		}
		if rp.Code != 250 {
			res[i] = d.s.refused(rp)
		}
	}
	return res, nil
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
	for ; d.pending > 0; d.pending-- {
		if _, err := d.s.reply(); err != nil {
			return
		}
	}
	if d.mailPending {
		d.checkMail()
	}
	if rp, err := d.s.cmd("RSET"); err != nil || rp.Code != 250 {
		d.s.Kill()
	}
}

// deadlineConn gives every Read and Write its own deadline, so that no
// step of a session can hang: go-smtp's client sets none while the body
// is written; RFC 5321 4.5.3.2 wants one on every block.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}
