package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/mailbox"
)

// Proxy is gw-scan as an SMTP content filter, amavisd-new's place: it
// receives on its port (10024 by tradition), scans, and relays what passes
// to the next hop (gw-smtpd on 10025, which trusts only the scanner). It
// answers the client's DATA only after the next hop answered, so accepted
// means accepted downstream or quarantined, never held in memory here.
type Proxy struct {
	Scanner    *Scanner
	Quarantine *QuarantineDir
	TmpDir     string
	NextHop    string        // host:port
	Timeout    time.Duration // each exchange with the next hop, and idle clients
	MaxBytes   int64         // 0: no limit of our own
}

// Replies a proxy gives for its own verdicts.
var (
	errContentRejected = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message content rejected"}
	errScanTempfail    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "content scan unavailable, try again later"}
	errLocal           = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "local error, try again later"}
	errNextHop         = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "next hop unavailable, try again later"}
)

// Serve accepts sessions on l until it is closed.
func (p *Proxy) Serve(l net.Listener) error {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &proxySession{p: p, remote: c.Conn().RemoteAddr().String()}, nil
	}))
	s.Domain = p.Scanner.Hostname
	s.ReadTimeout = p.Timeout
	s.WriteTimeout = p.Timeout
	s.MaxMessageBytes = p.MaxBytes
	s.MaxRecipients = envelope.MaxRecipients
	s.MaxLineLength = 4096
	// DSN's parameters go on to the next hop with the message (relay): a
	// NOTIFY=NEVER must not turn into a bounce one hop further in.
	s.EnableDSN = true
	err := s.Serve(l)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

type proxySession struct {
	p      *Proxy
	remote string
	env    envelope.Envelope // sender, recipients and DSN parameters, as accepted
}

func (s *proxySession) Reset() { s.env = envelope.Envelope{} }

var errBadDSN = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "bad DSN parameter"}

func (s *proxySession) Logout() error { return nil }

// Mail and Rcpt take the address go-smtp unquoted, so the check is the
// envelope's one definition; relay writes it back through mailbox.Path.
func (s *proxySession) Mail(from string, opts *smtp.MailOptions) error {
	if err := envelope.CheckAddress(from); err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "sender address refused"}
	}
	md, err := dsn.FromMailOptions(opts)
	if err != nil {
		return errBadDSN
	}
	s.env = envelope.Envelope{Sender: from, DSN: md}
	return nil
}

func (s *proxySession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := envelope.CheckAddress(to); err != nil || to == "" {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "recipient address refused"}
	}
	rd, err := dsn.FromRcptOptions(opts)
	if err != nil {
		return errBadDSN
	}
	s.env.Add(to, rd)
	return nil
}

// Data spools the message in stored form (LF line ends), scans it and
// either refuses it, holds it, or relays it and gives the next hop's
// answer.
func (s *proxySession) Data(r io.Reader) error {
	p := s.p
	log := p.Scanner.Log
	f, size, err := spool(p.TmpDir, &lfReader{br: bufio.NewReaderSize(r, 64<<10)})
	if err != nil {
		var re readErr
		if errors.As(err, &re) {
			return err // the client's trouble: go-smtp answers it
		}
		log.Warning("refused", "remote", s.remote, "code", 451, "err", err)
		return errLocal
	}
	defer f.Close()
	env := s.env
	id := NewID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.Timeout)
	defer cancel()
	rep := p.Scanner.Scan(ctx, f, size, id)
	plan := p.Scanner.Plan(rep, env)
	acts, deliver, held := plan.Acts, plan.Deliver, plan.Held
	mid := msgID(f)
	switch plan.Refuse {
	case Reject:
		p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 554)
		return errContentRejected
	case Tempfail:
		p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 451)
		return errScanTempfail
	}
	w := &Wrapper{Scanner: p.Scanner, TmpDir: p.TmpDir, Quarantine: p.Quarantine}
	// Relay first, hold after: if the relay fails, the client retries the
	// whole message and nothing was held twice.
	if len(deliver.Recipients) > 0 {
		// A trusted message goes on byte for byte: its token covers it.
		var msg io.Reader = io.NewSectionReader(f, 0, size)
		if !rep.Trusted {
			out, err := w.rewrite(f, size, rep, plan.Tag)
			if err != nil {
				log.Warning("refused", "scan", id, "code", 451, "err", err)
				return errLocal
			}
			defer out.Close()
			msg = out
		}
		reply, err := p.relay(deliver, msg)
		if err != nil {
			p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "next_hop", p.NextHop, "err", err)
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code >= 500 {
				return &smtp.SMTPError{Code: 554, EnhancedCode: se.EnhancedCode, Message: "next hop refused the message"}
			}
			return errNextHop
		}
		defer p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "next_hop", p.NextHop, "reply", reply)
	}
	if len(held.Recipients) > 0 {
		if err := w.hold(f, size, rep, held); err != nil {
			p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 451, "err", err)
			return errLocal
		}
		if len(deliver.Recipients) == 0 {
			p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 250)
		}
	}
	if len(deliver.Recipients) == 0 && len(held.Recipients) == 0 {
		p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 250)
	}
	return nil
}

// relay sends the message to the next hop and returns its final reply.
func (p *Proxy) relay(env envelope.Envelope, msg io.Reader) (string, error) {
	d := net.Dialer{Timeout: p.Timeout}
	conn, err := d.Dial("tcp", p.NextHop)
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(4 * p.Timeout))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(p.Scanner.Hostname); err != nil {
		return "", fmt.Errorf("EHLO: %w", err)
	}
	// go-smtp's client writes the path between angle brackets as given:
	// the local part must go quoted when it is no dot-atom, or the next
	// hop reads another address, and what follows a '>' or a blank in it
	// as parameters.
	from, err := mailbox.Path(env.Sender)
	if err != nil {
		return "", fmt.Errorf("MAIL: sender %q: %w", env.Sender, err)
	}
	// go-smtp's client writes DSN's parameters only to a next hop that
	// offers DSN (gw-smtpd does); one that does not gets none, and the
	// request ends there (gw-scan.8).
	mo := &smtp.MailOptions{}
	env.DSN.MailOptions(mo)
	if err := c.Mail(from, mo); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	for i, r := range env.Recipients {
		to, err := mailbox.Path(r)
		if err != nil {
			return "", fmt.Errorf("RCPT %q: %w", r, err)
		}
		if err := c.Rcpt(to, env.RcptDSNOf(i).RcptOptions()); err != nil {
			return "", fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.Copy(wc, msg); err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	resp, err := wc.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit()
	return strings.TrimSpace(resp.StatusText), nil
}

// lfReader turns CRLF into LF (the stored form); other CRs stay.
type lfReader struct {
	br *bufio.Reader
}

func (l *lfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := l.br.ReadByte()
		if err != nil {
			if n > 0 && err == io.EOF {
				return n, nil
			}
			if err != io.EOF {
				err = readErr{err}
			}
			return n, err
		}
		if c == '\r' {
			if next, err := l.br.Peek(1); err == nil && next[0] == '\n' {
				continue
			}
		}
		p[n] = c
		n++
		if l.br.Buffered() == 0 && n > 0 {
			return n, nil
		}
	}
	return n, nil
}
