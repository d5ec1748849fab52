package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/mailbox"
	"gw/lib/smtpserver"
	"gw/lib/tcpserver"
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

	hops idlePool[*hopClient] // idle connections to the next hop
}

// Replies a proxy gives for its own verdicts.
var (
	errContentRejected = smtpserver.R(554, "5.7.1", "message content rejected")
	errScanTempfail    = smtpserver.R(451, "4.7.1", "content scan unavailable, try again later")
	errLocal           = smtpserver.R(451, "4.3.0", "local error, try again later")
	errNextHop         = smtpserver.R(451, "4.4.1", "next hop unavailable, try again later")
	errBadSender       = smtpserver.R(553, "5.1.7", "sender address refused")
	errBadRcpt         = smtpserver.R(553, "5.1.3", "recipient address refused")
)

// Serve accepts sessions on l until it is closed. Each runs on gw's
// server core (lib/smtpserver) with the proxy as its policy: the same
// protocol, limits and DATA reader as gw-smtpd.
func (p *Proxy) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	cl := tcpserver.Client{RemoteIP: ap.Addr().Unmap().String(), RemotePort: strconv.Itoa(int(ap.Port()))}
	s := &proxySession{p: p, remote: c.RemoteAddr().String(), spool: sessionSpool{dir: p.TmpDir}}
	cfg := smtpserver.Config{
		Hostname: p.Scanner.Hostname, Timeout: p.Timeout,
		MinDataRate: smtpserver.DefaultMinDataRate, MaxJunk: smtpserver.DefaultMaxJunk,
		MaxErrors: 10, MaxRcpt: envelope.MaxRecipients, MaxMessage: p.MaxBytes,
		Log: func(sev, event string, kv ...any) {
			p.Scanner.Log.Log(sev, event, append([]any{"remote", s.remote}, kv...)...)
		},
	}
	smtpserver.Serve(c, cfg, cl, smtpserver.NewID(), s)
	s.spool.close()
}

// proxySession is the proxy's policy for one client.
type proxySession struct {
	p      *Proxy
	remote string
	from   string
	rcpts  []string
	// rcptDSN is each recipient's NOTIFY and ORCPT, by index into rcpts.
	rcptDSN []dsn.Rcpt
	// spool is the message under way in stored form, emptied at each
	// DATA.
	spool sessionSpool
}

func (s *proxySession) Connect(*smtpserver.Session) *smtpserver.Reply { return nil }
func (s *proxySession) Helo(*smtpserver.Session) *smtpserver.Reply    { return nil }
func (s *proxySession) Reset(*smtpserver.Session)                     { s.from, s.rcpts = "", nil }

// Auth: the proxy takes mail from gw's own listeners only; it offers no
// AUTH (the core does not advertise it).
func (s *proxySession) Auth(*smtpserver.Session, string) (sasl.Server, *smtpserver.Reply) {
	return nil, smtpserver.ErrUnimplemented
}

// parse reads a path as the next hop would (RFC 5321, with RFC 6531's
// UTF-8 when the client said SMTPUTF8) into the stored form, which must
// pass the envelope's one definition; relay writes it back through
// mailbox.Path.
func parsePath(path string, utf8 bool) (string, error) {
	a, err := mailbox.ParseRFC5321(path)
	if err != nil {
		return "", err
	}
	if !utf8 {
		for i := 0; i < len(path); i++ {
			if path[i] >= 0x80 {
				return "", mailbox.ErrNonASCII
			}
		}
	}
	if path == mailbox.DoubleBounce {
		return path, nil
	}
	return a.String(), envelope.CheckAddress(a.String())
}

func (s *proxySession) Mail(ss *smtpserver.Session, m *smtpserver.Mail) *smtpserver.Reply {
	from, err := parsePath(m.Path, m.UTF8)
	if err != nil && m.Path != mailbox.DoubleBounce {
		s.p.Scanner.Log.Info("mail", "remote", s.remote, "from", m.Path, "result", "reject", "reason", err)
		return errBadSender
	}
	if m.Path == mailbox.DoubleBounce {
		from = m.Path
	}
	s.from, s.rcpts, s.rcptDSN = from, nil, nil
	return nil
}

func (s *proxySession) Rcpt(ss *smtpserver.Session, r *smtpserver.Rcpt) *smtpserver.Reply {
	to, err := parsePath(r.Path, ss.Mail.UTF8)
	if err == nil && to == "" {
		err = mailbox.ErrSyntax
	}
	if err != nil {
		s.p.Scanner.Log.Info("rcpt", "remote", s.remote, "to", r.Path, "result", "reject", "reason", err)
		return errBadRcpt
	}
	r.Stored = to
	s.rcpts = append(s.rcpts, to)
	s.rcptDSN = append(s.rcptDSN, r.DSN)
	return nil
}

// Data spools the message in stored form (LF line ends), below the
// fields the checks at MAIL and RCPT added.
func (s *proxySession) Data(ss *smtpserver.Session) (io.Writer, *smtpserver.Reply) {
	s.spool.reset()
	for _, field := range ss.Mail.Prepend {
		s.spool.Write([]byte(field))
	}
	return &s.spool, nil
}

// DataEnd scans the spooled message and either refuses it, holds it, or
// relays it and gives the next hop's answer.
func (s *proxySession) DataEnd(ss *smtpserver.Session, m *smtpserver.Message) *smtpserver.Reply {
	p := s.p
	log := p.Scanner.Log
	f := &s.spool // the session's: serve closes it
	if m.Refused != nil {
		log.Info("refused", "remote", s.remote, "code", m.Refused.Code, "reason", m.Reason)
		return nil
	}
	if err := s.spool.err; err != nil {
		log.Warning("refused", "remote", s.remote, "code", 451, "err", err)
		return errLocal
	}
	// The spool holds the fields put on top as well as the m.Size bytes
	// the client sent: every scanner and the relay read all of it.
	size := s.spool.n
	// What follows the message in the spool is not its own: the fields of
	// the first Received line are read within it.
	msg := io.NewSectionReader(f, 0, size)
	// DSN's parameters go on to the next hop with the message (relay):
	// a NOTIFY=NEVER must not turn into a bounce one hop further in.
	env := envelope.Envelope{Sender: s.from, Recipients: s.rcpts, DSN: ss.Mail.DSN, RcptDSN: s.rcptDSN, RequireTLS: ss.Mail.RequireTLS}
	id := NewID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.Timeout)
	defer cancel()
	mid := msgID(msg)
	meta := Meta{From: env.Sender, Rcpts: env.Recipients, QueueID: mid}
	// The proxy's client is the front listener: the Internet client is
	// the one gw-smtpd's Received names. rspamd alone is told.
	if p.Scanner.Rspamd != nil {
		meta.IP, meta.Hostname, meta.Helo = clientFromReceived(msg)
	}
	rep := p.Scanner.Scan(ctx, f, size, id, meta)
	plan := p.Scanner.Plan(rep, env)
	acts, deliver, held := plan.Acts, plan.Deliver, plan.Held
	switch plan.Refuse {
	case Reject:
		p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 554)
		return errContentRejected
	case Tempfail:
		p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "code", 451)
		if plan.Text != "" {
			return smtpserver.R(451, "4.7.1", plan.Text)
		}
		return errScanTempfail
	}
	w := &Wrapper{Scanner: p.Scanner, TmpDir: p.TmpDir, Quarantine: p.Quarantine}
	var passed *smtpserver.Reply // the next hop's 250, when it took the message
	// Relay first, hold after: if the relay fails, the client retries the
	// whole message and nothing was held twice.
	if len(deliver.Recipients) > 0 {
		// A trusted message goes on byte for byte: its token covers it.
		// Another is rewritten as it is sent, straight from the spool: a
		// copy of it would be written and read once more for nothing.
		write := func(dst io.Writer) error {
			_, err := io.Copy(dst, io.NewSectionReader(f, 0, size))
			return err
		}
		if !rep.Trusted {
			add, err := w.additions(f, size, rep, plan.Tag)
			if err != nil {
				log.Warning("refused", "scan", id, "code", 451, "err", err)
				return errLocal
			}
			drop := p.Scanner.Drops(rep, plan.Tag)
			write = func(dst io.Writer) error { return RewriteDrop(dst, f, add, drop, size) }
		}
		reply, err := p.relay(deliver, write, ss.Mail.UTF8, size)
		if err != nil {
			p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "next_hop", p.NextHop, "err", err)
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code >= 500 {
				enh := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
				if se.EnhancedCode[0] != 5 {
					enh = "5.0.0"
				}
				return smtpserver.R(554, enh, "next hop refused the message")
			}
			return errNextHop
		}
		defer p.Scanner.LogVerdict(rep, mid, env.Recipients, acts, "next_hop", p.NextHop, "reply", reply)
		// The client hears the next hop's own 250, its queue id in it,
		// so that its transcript leads to the inside queue; a reply not
		// fit to pass on (PassOn) leaves the proxy's own words.
		passed = smtpserver.PassOn(250, reply)
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
	return passed
}

// relay sends the message, as write writes it, to the next hop and
// returns its final reply.
// It reuses a connection an earlier message left idle; one that fails at
// MAIL (the next hop closed it meanwhile) is replaced by a fresh one, which
// is safe: nothing of the message was sent on it.
func (p *Proxy) relay(env envelope.Envelope, write func(io.Writer) error, utf8 bool, size int64) (string, error) {
	// The client writes the path between angle brackets as given:
	// the local part must go quoted when it is no dot-atom, or the next
	// hop reads another address, and what follows a '>' or a blank in it
	// as parameters.
	from, err := mailbox.Path(env.Sender)
	if err != nil {
		return "", fmt.Errorf("MAIL: sender %q: %w", env.Sender, err)
	}
	to := make([]string, len(env.Recipients))
	for i, r := range env.Recipients {
		if to[i], err = mailbox.Path(r); err != nil {
			return "", fmt.Errorf("RCPT %q: %w", r, err)
		}
	}
	if h, ok := p.hops.get(hopIdleFor, (*hopClient).close); ok {
		reply, err, mailed := p.relayOn(h, env, from, to, write, utf8, size)
		if err == nil {
			p.hops.put(h, maxIdleHops, (*hopClient).quit)
			return reply, nil
		}
		h.close()
		if mailed {
			return "", err
		}
	}
	h, err := p.dialHop()
	if err != nil {
		return "", err
	}
	reply, err, _ := p.relayOn(h, env, from, to, write, utf8, size)
	if err != nil {
		h.close()
		return "", err
	}
	p.hops.put(h, maxIdleHops, (*hopClient).quit)
	return reply, nil
}

func (p *Proxy) dialHop() (*hopClient, error) {
	return dialHopClient(p.NextHop, p.Scanner.Hostname, p.Timeout)
}

// relayOn runs one transaction on h; mailed reports whether MAIL was
// accepted, after which a failure is the message's, not the connection's.
// DSN's parameters go only to a next hop that offers DSN (gw-smtpd
// does); one that does not gets none, and the request ends there
// (gw-scan.8). REQUIRETLS, unlike DSN, is never dropped: a next hop that
// does not offer it refuses the message here (RFC 8689 5, no downgrade).
func (p *Proxy) relayOn(h *hopClient, env envelope.Envelope, from string, to []string, write func(io.Writer) error, utf8 bool, size int64) (reply string, err error, mailed bool) {
	h.conn.SetDeadline(time.Now().Add(4 * p.Timeout))
	return h.send(env, from, to, write, utf8, size)
}
