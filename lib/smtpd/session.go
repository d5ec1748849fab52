package smtpd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gw/lib/authcheck"
	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/mailbox"
	"gw/lib/milter"
	"gw/lib/msgid"
	"gw/lib/qq"
	"gw/lib/relay"
	"gw/lib/smtpserver"
	"gw/lib/tcpserver"
	"gw/lib/tracehdr"
)

// MaxCommandLine is the longest command line gw-smtpd answers, CRLF
// included; a longer one gets 500 (smtpserver.ErrLineTooLong).
const MaxCommandLine = smtpserver.DefaultMaxLine

// session is gw-smtpd's policy for one SMTP conversation: the core
// (lib/smtpserver) runs the protocol and asks it at each step.
type session struct {
	cfg *Config
	cl  Client
	ss  *smtpserver.Session
	id  string
	log func(severity, event string, kv ...any)
	// held gathers the session's lines until it next waits (waiting,
	// and the core's Config.Waiting): a pipelined transaction's lines
	// go to the log in one write.
	held logline.Held

	helo     string // sanitized HELO/EHLO argument; "" before one
	authUser string
	badRcpts int // refused recipients (MaxBadRcpt)
	authFail int
	msgs     int
	txOpen   bool // a MAIL was accepted and no DATA followed yet

	// the transaction
	from    mailbox.Address
	badFrom bool
	rcpts   []string
	rcptDSN []dsn.Rcpt // each accepted recipient's NOTIFY and ORCPT, by index into rcpts
	mailDSN dsn.Mail   // MAIL's RET and ENVID
	reqTLS  bool       // MAIL's REQUIRETLS (RFC 8689), taken over TLS only

	// the message under way
	msgID    string
	tx       handoff.Tx
	beginErr error
	mw       *handoff.MessageWriter

	rblDone   bool
	rblListed *smtpserver.Reply // the refusal for a listed client

	// message authentication (msgauth.go); zero when not configured
	authFace authcheck.Face
	atx      *authcheck.Transaction
	heloSPF  *authcheck.HeloResult // the HELO name's SPF result, once a session
	spool    *spool
	// hold is why DMARC quarantines the message at hand, when it is to
	// be held rather than queued (hold.go); "" otherwise.
	hold string

	milters []milter.Milter // this client's (milter.go)
	milt    *milter.Session // their side of the session, from the first MAIL
}

// Serve runs one SMTP session on conn for client cl and closes conn. It is
// the part both ways of running share: standalone after accept and ACL,
// and under tcpserver on fds 0 and 1.
func Serve(conn net.Conn, cfg *Config, cl Client) {
	s := &session{cfg: cfg, cl: cl, id: smtpserver.NewID()}
	s.held = cfg.Log.Hold(logline.With("sid", s.id))
	defer s.held.Release() // the end line, and whatever a panic left
	s.log = func(sev, event string, kv ...any) {
		// A message refused or discarded after DATA has no qid: its
		// Message-ID is how the sender's copy finds it (gw-qstat trace).
		if (event == "refused" || event == "discarded") && len(kv) > 0 && kv[0] == "msg" && !hasKey(kv, "msgid") {
			kv = withMsgID(kv, s.mw)
		}
		s.held.Log(sev, event, kv...)
	}
	kv := []any{"ip", cl.RemoteIP, "port", cl.RemotePort}
	if cl.HasRemoteHost {
		kv = append(kv, "host", cl.RemoteHost)
	}
	if cl.Rule != "" {
		kv = append(kv, "rule", cl.Rule)
	}
	kv = append(kv, "relay", cl.Relay)
	s.log("info", "connect", kv...)
	core := smtpserver.Config{
		Hostname: cfg.Hostname, Greeting: cfg.Greeting,
		Timeout: cfg.Timeout, MinDataRate: cfg.MinDataRate, MaxSession: cfg.MaxSession,
		MaxJunk: cfg.MaxJunk, MaxErrors: cfg.MaxErrors, MaxRcpt: cfg.MaxRcpt,
		MaxMessage: s.databytes(),
		TLS:        cfg.TLS, ImplicitTLS: cfg.ImplicitTLS, Auth: cfg.Auth != nil,
		Idle:    func(idle bool) bool { return tcpserver.Idle(conn, idle) },
		Closing: func() bool { return tcpserver.Closing(conn) },
		Log:     s.log,
		Waiting: s.held.Flush,
	}
	if cl.Peer {
		// a gw instance's gw-send, seeing it, puts its qid on top of
		// the message (X-Gw-Trace); no one else is asked for it
		core.Keywords = []string{tracehdr.Keyword}
	}
	reason := smtpserver.Serve(conn, core, cl, s.id, s)
	if s.milt != nil {
		s.milt.Close()
	}
	if s.tx != nil { // a message a panic cut off
		s.tx.Abort()
	}
	s.log("info", "end", "msgs", s.msgs, "reason", reason)
}

// Connect refuses a client that talks before the greeting: it is not
// waiting for replies, a spam engine (Postfix postscreen's PREGREET).
func (s *session) Connect(ss *smtpserver.Session) *smtpserver.Reply {
	s.ss = ss
	if s.cfg.MsgAuth != nil {
		s.authFace = s.face()
	}
	s.pickMilters()
	if !s.cfg.ImplicitTLS && !s.cl.Relay && ss.TalksFirst(s.cfg.GreetDelay) {
		s.log("info", "pregreet", "delay", s.cfg.GreetDelay.Seconds())
		return errPregreet
	}
	return s.limitConnect()
}

// Helo records the HELO or EHLO name, sanitized for the Received line.
func (s *session) Helo(ss *smtpserver.Session) *smtpserver.Reply {
	s.helo = sanitize(ss.Helo)
	s.log("info", "helo", "helo", ss.Helo, "ehlo", ss.EHLO)
	return nil
}

// Reset ends the transaction.
func (s *session) Reset(*smtpserver.Session) {
	if s.txOpen {
		// A transaction abandoned before DATA (RSET, HELO, STARTTLS):
		// its MAIL and RCPT lines belong to no message, and gw-qstat
		// trace must not give them to the session's next one.
		s.log("info", "reset", "rcpts", len(s.rcpts))
		s.txOpen = false
	}
	s.reset()
	if s.milt != nil {
		s.milt.Reset()
	}
}

func (s *session) reset() {
	s.badFrom, s.rcpts, s.rcptDSN = false, s.rcpts[:0], s.rcptDSN[:0]
	s.from, s.mailDSN, s.reqTLS = mailbox.Address{}, dsn.Mail{}, false
	s.atx, s.spool = nil, nil
}

// txEnvelope is the transaction's envelope for the injector: the DSN
// parameters go with it (gw-queue.8, "Extended envelope"), each
// recipient's with it.
func (s *session) txEnvelope() envelope.Envelope {
	return envelope.Envelope{Sender: s.from.String(), Recipients: s.rcpts, DSN: s.mailDSN, RcptDSN: s.rcptDSN, RequireTLS: s.reqTLS}
}

func (s *session) databytes() int64 {
	if s.cl.HasDatabytes {
		return s.cl.Databytes
	}
	return s.cfg.Databytes
}

// relays reports whether the client may send to any domain.
func (s *session) relays() bool { return s.cl.Relay || s.authUser != "" }

// parse reads a path as gw-smtpd accepts it: UTF-8 only in a
// transaction that said SMTPUTF8 (RFC 6531).
func (s *session) parse(path string) (mailbox.Address, error) {
	if s.ss.Mail != nil && s.ss.Mail.UTF8 {
		return mailbox.ParseUTF8(path)
	}
	return mailbox.Parse(path)
}

// Mail starts a transaction. The core has checked the syntax and the
// parameters (SIZE against databytes, AUTH=); the sender is the path
// the client wrote, parsed by lib/mailbox.
func (s *session) Mail(ss *smtpserver.Session, m *smtpserver.Mail) *smtpserver.Reply {
	path := m.Path
	var from mailbox.Address
	var err error
	if m.UTF8 {
		from, err = mailbox.ParseUTF8(path)
	} else {
		from, err = mailbox.Parse(path)
	}
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
	if s.noSpace(from, m.Size) {
		return errNoSpace
	}
	if r := s.limitMail(); r != nil {
		return r
	}
	m.Addr, s.from, s.mailDSN, s.reqTLS = from, from, m.DSN, m.RequireTLS
	s.badFrom = !from.Null && s.cfg.BadMailFrom.Match(from.String())
	if r := s.spfAtMail(ss); r != nil {
		s.from = mailbox.Address{}
		return r
	}
	if r := s.milterMail(ss, from.String()); r != nil {
		s.from = mailbox.Address{}
		return r
	}
	s.log("info", "mail", "from", from.String(), "result", "accept", "badmailfrom", s.badFrom, "utf8", m.UTF8)
	s.txOpen = true
	return nil
}

// Rcpt judges a recipient on the path the client wrote.
func (s *session) Rcpt(ss *smtpserver.Session, r *smtpserver.Rcpt) *smtpserver.Reply {
	to, err := s.parse(r.Path)
	if err == nil && to.Null {
		err = mailbox.ErrSyntax
	}
	if err != nil {
		return s.refuseRcpt(r.Path, addressError(err, errBadRcpt), err.Error())
	}
	if r := s.limitRcpt(); r != nil {
		return r
	}
	rep, reason := s.decide(&to)
	if rep != nil {
		return s.refuseRcpt(to.String(), rep, reason)
	}
	addr := to.String()
	if s.cl.Relay && s.cl.RelayAppend != "" {
		addr += s.cl.RelayAppend // qmail's RELAYCLIENT suffix
	}
	if err := envelope.CheckAddress(addr); err != nil {
		// Only RELAYCLIENT's suffix can make a parsed address fail here.
		rep := errAddrTooLong
		if e := (*envelope.Error)(nil); errors.As(err, &e) && e.Code == qq.BadAddress {
			rep = errBadRcpt
		}
		return s.refuseRcpt(addr, rep, err.Error())
	}
	if rep := s.milterRcpt(addr); rep != nil {
		return rep
	}
	r.Addr, r.Stored = to, addr
	s.rcpts = append(s.rcpts, addr)
	s.rcptDSN = append(s.rcptDSN, r.DSN)
	s.log("info", "rcpt", "to", addr, "result", "accept", "reason", reason)
	return nil
}

// Data starts the message: the injector is started and given the
// Received line and the fields the checks at MAIL and RCPT added; the
// core passes the body through s.mw. When the
// injector cannot start, the body is read all the same, to answer
// after it.
func (s *session) Data(ss *smtpserver.Session) (io.Writer, *smtpserver.Reply) {
	s.txOpen = false
	s.msgs++
	s.msgID = s.id + "." + strconv.Itoa(s.msgs)
	if s.spooling() {
		// the checks see the message whole before the injector starts
		s.spool = &spool{}
		s.tx, s.beginErr = s.spool, nil
		s.mw = &handoff.MessageWriter{Tx: s.spool}
		return s.mw, nil
	}
	env := s.txEnvelope()
	s.waiting() // a gw-queued restarting is waited for
	s.tx, s.beginErr = begin(s.cl.Injector, s.id, env)
	s.mw = &handoff.MessageWriter{Tx: s.tx}
	if s.beginErr != nil {
		s.tx, s.mw.Tx = nil, nil
	} else {
		io.WriteString(s.tx, s.received(s.msgID))
		for _, f := range ss.Mail.Prepend {
			io.WriteString(s.tx, f)
		}
	}
	return s.mw, nil
}

// DataEnd commits the message or abandons it, and logs which, once.
func (s *session) DataEnd(ss *smtpserver.Session, m *smtpserver.Message) *smtpserver.Reply {
	tx, msgID := s.tx, s.msgID
	s.tx = nil
	if s.mw != nil {
		s.mw.End()
	}
	abort := func() {
		if tx != nil {
			tx.Abort()
		}
	}
	switch {
	case m.Refused != nil:
		abort()
		kv := []any{"msg", msgID, "code", m.Refused.Code, "reason", m.Reason}
		if m.Reason == "databytes" {
			kv = append(kv, "size", m.Size)
		}
		if id := refusedMsgID(s.mw, m.Header); id != "" {
			kv = append(kv, "msgid", id)
		}
		sev := "info"
		if m.Refused.Temporary() {
			sev = "warning"
		}
		s.log(sev, "refused", kv...)
		return nil
	case s.beginErr != nil:
		s.log("warning", "refused", "msg", msgID, "code", 451, "err", s.beginErr)
		return errNoInjector
	case s.mw.Hops.Looping():
		abort()
		s.log("info", "refused", "msg", msgID, "code", 554, "reason", "looping", "hops", s.mw.Hops.Hops)
		return errLooping
	}
	if p := s.spool; p != nil {
		s.spool = nil
		var r *smtpserver.Reply
		if tx, r = s.spooledEnd(ss, p, msgID); r != nil {
			return r
		}
		if tx == nil {
			// a milter discarded it
			return reply(250, "2.0.0", "ok "+msgID)
		}
	}
	s.waiting() // the injector's fsync
	code, err := commit(tx)
	if code != qq.OK {
		r := queueReply(qq.Permanent(code), qq.Reply(code))
		s.log("warning", "refused", "msg", msgID, "code", r.Code, "qq", code, "err", err)
		return r
	}
	// The queue id, when the injector said it, is the client's key to the
	// queue's log (qmail's "qp"); else the message's id in this log.
	qid := handoff.QID(tx)
	if qid == "" {
		s.log("info", "accepted", s.acceptedFields([]any{"msg", msgID, "from", s.from.String(), "rcpts", len(s.rcpts), "size", m.Size, "chunked", m.Chunked})...)
		return reply(250, "2.0.0", "ok "+msgID)
	}
	s.log("info", "accepted", s.acceptedFields([]any{"msg", msgID, "qid", qid, "from", s.from.String(), "rcpts", len(s.rcpts), "size", m.Size, "chunked", m.Chunked})...)
	return reply(250, "2.0.0", "ok "+qid)
}

// acceptedFields are kv and what the message itself tells the log: its
// Message-ID, and the link to the instance that handed it on.
func (s *session) acceptedFields(kv []any) []any {
	kv = withMsgID(kv, s.mw)
	if s.mw != nil {
		kv = append(kv, s.mw.TraceFields(s.cl.Peer)...)
	}
	return kv
}

// withMsgID adds the message's Message-ID, when it has one, to an
// accepted line's fields: the key by which a user's copy of the message
// finds its qid in the log (gw-qstat trace).
func withMsgID(kv []any, mw *handoff.MessageWriter) []any {
	if mw == nil {
		return kv
	}
	if id := mw.ID.ID(); id != "" {
		kv = append(kv, "msgid", id)
	}
	return kv
}

// refusedMsgID is the Message-ID of a message refused at its end: as the
// injector's copy saw it, else from the header the core kept, which it
// keeps also when the message went over databytes and none of it was
// passed on.
func refusedMsgID(mw *handoff.MessageWriter, header []byte) string {
	if mw != nil {
		if id := mw.ID.ID(); id != "" {
			return id
		}
	}
	var f msgid.Finder
	f.Write(header)
	return f.ID()
}

func hasKey(kv []any, key string) bool {
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == key {
			return true
		}
	}
	return false
}

// begin starts the message with the injector main chose for the client;
// with none, the message is refused as when no injector could start.
func begin(inj handoff.Injector, sid string, env envelope.Envelope) (handoff.Tx, error) {
	if inj == nil {
		return nil, errors.New("no injector chosen for this client")
	}
	return handoff.BeginSession(inj, sid, env)
}

// commit is the one place a message is handed to the injector for good.
func commit(tx handoff.Tx) (int, error) {
	return tx.Commit()
}

func addressError(err error, syntax *smtpserver.Reply) *smtpserver.Reply {
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

// waiting writes the lines held before the session waits on another
// program (the injector, a milter, a DNS or callout answer, a shared
// rate counter): a line is never held while the session waits, whoever
// for. The core calls the same before it waits for the client.
func (s *session) waiting() { s.held.Flush() }

// explain tells the session test (Config.Explain) a decision in words.
func (s *session) explain(format string, a ...any) {
	if s.cfg.Explain != nil {
		s.cfg.Explain(fmt.Sprintf(format, a...))
	}
}

func (s *session) refuseRcpt(to string, r *smtpserver.Reply, reason string) *smtpserver.Reply {
	s.log("info", "rcpt", "to", to, "result", "reject", "code", r.Code, "reason", reason)
	s.badRcpts++
	if s.cfg.MaxBadRcpt > 0 && s.badRcpts >= s.cfg.MaxBadRcpt {
		s.log("warning", "too_many_bad_rcpts", "count", s.badRcpts)
		return errTooManyBad // 421: the core ends the session
	}
	return r
}

// decide is the recipient policy, in order: badmailfrom, postmaster,
// relay control, badrcptto, DNSBL, unknown users (the list, then the
// callout), greylisting. It may rewrite a (postmaster, localiphost). A
// nil reply accepts.
func (s *session) decide(a *mailbox.Address) (*smtpserver.Reply, string) {
	if s.badFrom {
		s.explain("badmailfrom: the sender %s matches control/badmailfrom: every recipient refused", s.from)
		return errBadMailFrom, "badmailfrom"
	}
	if a.Postmaster() { // RFC 5321 4.5.1: always accepted
		a.Domain = strings.ToLower(s.cfg.Hostname)
		s.explain("postmaster: <postmaster> is always accepted (RFC 5321 4.5.1)")
		return nil, "postmaster"
	}
	if ip, ok := a.LiteralIP(); ok && s.cfg.LocalIPHost != "" {
		if local, err := netip.ParseAddr(s.cl.LocalIP); err == nil && local.Unmap() == ip.Unmap() {
			a.Domain, a.Literal = strings.ToLower(s.cfg.LocalIPHost), false // qmail's box@[local IP]
			s.explain("localiphost: [%s] is this host's address: read as %s", ip, a.Domain)
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
			s.explain("relay: %s is accepted here (rcpthosts/morercpthosts)", a.Domain)
		case relay.Routed:
			s.explain("relay: refused: %s routes through this host by %% or ! (not relayed)", a)
			return errRouted, v.String()
		default:
			s.explain("relay: refused: %s is not in rcpthosts/morercpthosts and the client may not relay (no RELAYCLIENT, no AUTH)", a.Domain)
			return errNoRelay, v.String()
		}
	} else if s.authUser != "" {
		s.explain("relay: allowed to any domain: authenticated as %s", s.authUser)
	} else {
		s.explain("relay: allowed to any domain: RELAYCLIENT is set for this client")
	}
	if s.cfg.BadRcptTo.Match(a.String()) {
		s.explain("badrcptto: %s matches control/badrcptto", a)
		return errBadRcptTo, "badrcptto"
	}
	if !s.relays() {
		if r := s.rbl(); r != nil {
			return r, "dnsbl"
		}
	} else {
		s.explain("dnsbl: not consulted: the client relays")
	}
	if r, why := s.knownRcpt(a); r != nil {
		return r, why
	}
	if !s.relays() && s.cfg.Greylist != nil && !s.cl.NoGreylist {
		s.waiting()
		pass, err := s.cfg.Greylist.Check(s.cl.RemoteIP, s.from.String(), a.String())
		if err != nil { // fail open: greylisting is a delay, not a defence to keep at any cost
			s.log("warning", "greylist", "err", err)
			s.explain("greylist: unreadable (%v): passed, as greylisting fails open", err)
		} else if !pass {
			s.explain("greylist: the triplet (%s, %s, %s) is new or too young: deferred", s.cl.RemoteIP, s.from, a)
			return errGreylisted, "greylisted"
		} else {
			s.explain("greylist: the triplet (%s, %s, %s) passes", s.cl.RemoteIP, s.from, a)
		}
	} else if s.cfg.Greylist != nil && s.relays() {
		s.explain("greylist: not applied: the client relays")
	} else if s.cfg.Greylist != nil {
		s.explain("greylist: not applied: GW_NOGREYLIST is set")
	}
	return nil, reason
}

// knownRcpt checks a recipient of an accepted domain against the list of
// valid recipients, then by callout to the host that owns the domain.
func (s *session) knownRcpt(a *mailbox.Address) (*smtpserver.Reply, string) {
	if s.cfg.Recipients != nil && s.cfg.Domains.Accepts(a.Domain) {
		ok, err := s.cfg.Recipients.Valid(a.Local, a.Domain)
		if err != nil {
			s.log("warning", "recipients", "err", err)
			s.explain("recipients: unreadable (%v): deferred", err)
			return errLocal, "recipients_unreadable"
		}
		if !ok && !strings.EqualFold(a.Local, "postmaster") && !strings.EqualFold(a.Local, "abuse") {
			s.explain("recipients: %s is not a known recipient of %s (control/recipients)", a, a.Domain)
			return errUnknownUser, "unknown_user"
		}
		s.explain("recipients: %s is known", a)
	}
	if s.cfg.Verifier != nil && s.cfg.Domains.Accepts(a.Domain) && !strings.EqualFold(a.Local, "postmaster") {
		s.waiting()
		v, detail := s.cfg.Verifier.Verify(a.Local, a.Domain)
		switch v {
		case Unknown:
			s.log("info", "callout", "to", a.String(), "result", "unknown", "detail", detail)
			s.explain("callout: %s does not exist: %s", a, detail)
			return errUnknownUser, "callout_unknown"
		case Unverified:
			s.log("warning", "callout", "to", a.String(), "result", "unverified", "detail", detail)
			s.explain("callout: %s could not be verified (%s): deferred", a, detail)
			return errUnverified, "callout_unverified"
		case Exists:
			s.log("info", "callout", "to", a.String(), "result", "exists", "detail", detail)
			s.explain("callout: %s exists: %s", a, detail)
		}
	}
	return nil, ""
}

// rbl returns the refusal for a listed client, looking it up once a
// session: rblsmtpd's RBLSMTPD first (set and empty: never listed; set:
// listed with that text, 553 when it starts with '-', else 451), then the
// zones of control/rblzones.
func (s *session) rbl() *smtpserver.Reply {
	if s.rblDone {
		return s.rblListed
	}
	s.rblDone = true
	if s.cl.HasRBLSMTPD {
		if s.cl.RBLSMTPD == "" {
			s.explain("dnsbl: RBLSMTPD is set empty by the ACL: never listed")
			return nil
		}
		s.rblListed = rblReply(s.cl.RBLSMTPD)
		s.log("info", "dnsbl", "listed", true, "source", "RBLSMTPD")
		s.explain("dnsbl: listed by the ACL's RBLSMTPD=%q: refused", s.cl.RBLSMTPD)
		return s.rblListed
	}
	if s.cfg.RBL == nil {
		s.explain("dnsbl: no zones (control/rblzones)")
		return nil
	}
	s.waiting()
	hit, err := s.cfg.RBL.Lookup(s.cl.RemoteIP)
	if err != nil {
		s.log("warning", "dnsbl", "err", err)
		s.explain("dnsbl: lookup failed (%v): not listed, as DNSBLs fail open", err)
	}
	if hit == nil {
		if err == nil {
			s.explain("dnsbl: %s is not listed in any zone of control/rblzones", s.cl.RemoteIP)
		}
		return nil
	}
	s.log("info", "dnsbl", "listed", true, "zone", hit.Zone, "text", hit.Text)
	s.explain("dnsbl: %s is listed in zone %s (%q): refused", s.cl.RemoteIP, hit.Zone, hit.Text)
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
func rblReply(text string) *smtpserver.Reply {
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
	if !s.ss.EHLO {
		return p
	}
	// RFC 3848's protocol types, and RFC 6531's for a message that said
	// SMTPUTF8.
	p = "ESMTP"
	if s.ss.Mail != nil && s.ss.Mail.UTF8 {
		p = "UTF8SMTP"
	}
	if s.ss.TLS != nil {
		p += "S"
	}
	if s.authUser != "" {
		p += "A"
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
