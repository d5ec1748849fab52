package milter

import (
	"fmt"
	"net"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// Client is what the milters are told of the SMTP client when they are
// first needed, at its first MAIL: the connection and the HELO are
// replayed then.
type Client struct {
	// Macros are the connection's values filters ask for by name: j,
	// {daemon_name}, {if_addr}, {client_addr}, {client_name}, ...
	Macros map[string]string
	Addr   string // the client's IP address; "" for a local client
	Port   uint16
	Name   string // its host name, or "[addr]" when it has none
	Helo   string
}

// Transaction is the message at its end, as it would be queued: the
// envelope left after RCPT and the message in stored form (LF line
// ends).
type Transaction struct {
	Macros  map[string]string // the message's own: i, {msg_id}
	Sender  string            // "" for the null sender
	Rcpts   []string
	Message []byte
}

// Reply is a refusal a milter gave, or a default action's.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Step is the milters' answer to MAIL or to one RCPT: a refusal of that
// command (Reply, given by By), or nil to go on.
type Step struct {
	Reply  *Reply
	By     string
	Failed []Failed // milters that failed since the last answer
}

// Outcome is the milters' verdict on the message. When Reply is set the
// message is refused with it; when Discard is set it is accepted and
// dropped. Otherwise Sender, Rcpts and Message are what goes to the
// queue.
type Outcome struct {
	Reply      *Reply
	Discard    bool
	By         string // the milter whose verdict or failure decided
	Sender     string
	Rcpts      []string
	Message    []byte
	Quarantine []string // "name: reason" for each milter that asked
	Failed     []Failed // milters that failed since the last answer
	Changes    []string // what each milter changed, for the log
}

// Failed is a milter that failed, and why.
type Failed struct {
	Name string
	Err  error
}

// The replies for a failed milter's default action (Postfix's words).
var (
	replyTempfail = &Reply{451, "4.7.1", "Service unavailable - try again later"}
	replyReject   = &Reply{550, "5.7.1", "Command rejected"}
)

// Session follows one SMTP session through a list of milters, as
// Postfix does: each milter has one connection for the session and
// hears MAIL and each RCPT when the client gives them, so its reply to
// a RCPT is that recipient's alone; the message goes through the list
// at its end, each milter seeing what the ones before it left. A
// session not yet at MAIL costs the milters nothing.
type Session struct {
	client  Client
	macros  *gomilter.MacroBag
	conns   []*conn
	discard string   // the milter that discarded the transaction at MAIL or RCPT
	failed  []Failed // not yet reported
}

// conn is one milter's side of the session.
type conn struct {
	m       Milter
	cs      *gomilter.ClientSession // nil until the first MAIL, and after a failure
	lead    bool                    // it gives header values with their leading space
	inTx    bool                    // told MAIL since the last reset: it is owed an abort
	skipTx  bool                    // it accepted or discarded the transaction: told nothing more of it
	off     bool                    // skipped for the session: it accepted the connection, or failed under default=accept
	refusal *Reply                  // every later command's reply: its refusal at connect or HELO, or a failure's default
}

// Open starts the milters' side of a session; nothing is dialled yet.
func Open(list []Milter, c Client) *Session {
	s := &Session{client: c, macros: gomilter.NewMacroBag()}
	for k, v := range c.Macros {
		s.macros.Set(k, v)
	}
	for _, m := range list {
		s.conns = append(s.conns, &conn{m: m})
	}
	return s
}

// macroStages are the macros sent at each stage: what Postfix sends by
// default, and {client_*} at the connection for filters that read them
// there rather than from the connect call.
var macroStages = map[gomilter.MacroStage][]string{
	gomilter.StageConnect: {"j", "v", "{daemon_name}", "{daemon_addr}", "{if_name}", "{if_addr}",
		"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "_"},
	gomilter.StageHelo: {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	gomilter.StageMail: {"i", "{auth_type}", "{auth_authen}", "{auth_ssf}", "{auth_author}",
		"{mail_mailer}", "{mail_host}", "{mail_addr}"},
	gomilter.StageRcpt: {"{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"},
	gomilter.StageData: {"i"},
	gomilter.StageEOH:  {"i"},
	gomilter.StageEOM:  {"i", "{msg_id}"},
}

func client(m Milter) *gomilter.Client {
	opts := []gomilter.Option{
		gomilter.WithDialer(&net.Dialer{Timeout: m.Timeout}),
		gomilter.WithReadTimeout(m.Timeout),
		gomilter.WithWriteTimeout(m.Timeout),
		gomilter.WithoutDefaultMacros(),
	}
	for st, names := range macroStages {
		opts = append(opts, gomilter.WithMacroRequest(st, names))
	}
	return gomilter.NewClient(m.Network, m.Address, opts...)
}

// Mail starts a transaction: each milter is told the sender, in order,
// after the connection and HELO the first time. The first refusal is
// MAIL's; the milters after it are not told.
func (s *Session) Mail(sender string, macros map[string]string) Step {
	s.Reset()
	for k, v := range macros {
		s.macros.Set(k, v)
	}
	s.macros.Set("{mail_addr}", sender)
	s.macros.Set("{mail_host}", domainOf(sender))
	s.macros.Set("{mail_mailer}", "esmtp")
	for _, c := range s.conns {
		if c.cs == nil && !c.off && c.refusal == nil {
			s.open(c)
		}
		if c.off {
			continue
		}
		if c.refusal != nil {
			return s.step(c.refusal, c.m.Name)
		}
		// go-milter writes the angle brackets itself.
		act, err := c.cs.Mail(sender, "")
		c.inTx = true
		if r := s.envelope(c, act, err); r != nil {
			return s.step(r, c.m.Name)
		}
	}
	return s.step(nil, "")
}

// Rcpt asks the milters in the transaction about one recipient. The
// first refusal is this RCPT's reply alone: the recipients before and
// after it are judged on their own.
func (s *Session) Rcpt(rcpt string) Step {
	s.macros.Set("{rcpt_addr}", rcpt)
	s.macros.Set("{rcpt_host}", domainOf(rcpt))
	s.macros.Set("{rcpt_mailer}", "esmtp")
	for _, c := range s.conns {
		if c.off {
			continue
		}
		if c.refusal != nil {
			return s.step(c.refusal, c.m.Name)
		}
		if !c.inTx || c.skipTx {
			continue
		}
		act, err := c.cs.Rcpt(rcpt, "")
		if r := s.envelope(c, act, err); r != nil {
			return s.step(r, c.m.Name)
		}
	}
	return s.step(nil, "")
}

// End passes the message through the milters still in the transaction,
// in order: each sees the message and envelope as the ones before it
// left them.
func (s *Session) End(tx Transaction) (out Outcome) {
	out = Outcome{Sender: tx.Sender, Rcpts: append([]string(nil), tx.Rcpts...), Message: tx.Message}
	defer func() { out.Failed = s.drain() }()
	if s.discard != "" {
		out.Discard, out.By = true, s.discard
		return out
	}
	for k, v := range tx.Macros {
		s.macros.Set(k, v)
	}
	for _, c := range s.conns {
		if c.off {
			continue
		}
		if c.refusal != nil {
			out.Reply, out.By = c.refusal, c.m.Name
			return out
		}
		if !c.inTx || c.skipTx {
			continue
		}
		cur := tx
		cur.Sender, cur.Rcpts, cur.Message = out.Sender, out.Rcpts, out.Message
		v, err := s.message(c, cur)
		if err != nil {
			if r := s.fail(c, err); r != nil {
				out.Reply, out.By = r, c.m.Name
				return out
			}
			continue
		}
		if v.reply != nil || v.discard {
			out.Reply, out.Discard, out.By = v.reply, v.discard, c.m.Name
			return out
		}
		out.Sender, out.Rcpts, out.Message = v.sender, v.rcpts, v.message
		if v.quarantine != "" {
			out.Quarantine = append(out.Quarantine, c.m.Name+": "+v.quarantine)
		}
		if len(v.changes) > 0 {
			out.Changes = append(out.Changes, c.m.Name+": "+strings.Join(v.changes, ", "))
		}
	}
	return out
}

// Reset ends the transaction (the message's end, RSET, a refused MAIL,
// a new MAIL): each milter told MAIL is told to abort, as Postfix does
// before it reuses a connection; the connections stay for the next
// transaction.
func (s *Session) Reset() {
	s.discard = ""
	for _, c := range s.conns {
		if c.inTx && c.cs != nil {
			if err := c.cs.Abort(nil); err != nil {
				s.fail(c, err)
			}
		}
		c.inTx, c.skipTx = false, false
	}
}

// Close ends the milters' connections, at the end of the SMTP session.
func (s *Session) Close() {
	for _, c := range s.conns {
		if c.cs != nil {
			c.cs.Close()
			c.cs = nil
		}
	}
}

// open dials the milter, negotiates, and replays the connection and the
// HELO. What it answers there holds for the whole session.
func (s *Session) open(c *conn) {
	cs, err := client(c.m).Session(s.macros)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.cs, c.lead = cs, cs.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	act, err := cs.Conn(s.client.Name, family(s.client.Addr), s.client.Port, s.client.Addr)
	if s.atConnect(c, act, err) {
		return
	}
	act, err = cs.Helo(s.client.Helo)
	s.atConnect(c, act, err)
}

// atConnect reads the answer to the connection or HELO; done when the
// milter's say for the session is had: it accepted (it is skipped), it
// refused (every MAIL gets its reply), or it failed.
func (s *Session) atConnect(c *conn, act *gomilter.Action, err error) (done bool) {
	if err != nil {
		s.fail(c, err)
		return true
	}
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return false
	case gomilter.ActionAccept:
		c.off = true
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r, err := parseReply(int(act.SMTPCode), act.SMTPReply)
		if err != nil {
			s.fail(c, err)
			return true
		}
		c.refusal = r
	default:
		s.fail(c, fmt.Errorf("milter answered %v to the connection", act))
		return true
	}
	c.cs.Close()
	c.cs = nil
	return true
}

// envelope reads the answer to MAIL or RCPT: a refusal is that command's;
// an accept or a discard means the milter wants no more of this
// transaction, and a discard drops the message whatever the others say.
func (s *Session) envelope(c *conn, act *gomilter.Action, err error) *Reply {
	if err != nil {
		return s.fail(c, err)
	}
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return nil
	case gomilter.ActionAccept:
		c.skipTx = true
		return nil
	case gomilter.ActionDiscard:
		c.skipTx = true
		if s.discard == "" {
			s.discard = c.m.Name
		}
		return nil
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r, err := parseReply(int(act.SMTPCode), act.SMTPReply)
		if err != nil {
			return s.fail(c, err)
		}
		return r
	}
	return s.fail(c, fmt.Errorf("milter answered %v", act))
}

// fail closes a failed milter's connection and applies its default
// action for the rest of the session, as Postfix's
// milter_default_action: accept skips it, tempfail and reject refuse
// every later command. The reply is the current command's, nil under
// accept.
func (s *Session) fail(c *conn, err error) *Reply {
	if c.cs != nil {
		c.cs.Close()
		c.cs = nil
	}
	c.inTx = false
	s.failed = append(s.failed, Failed{c.m.Name, err})
	switch c.m.Default {
	case FailAccept:
		c.off = true
		return nil
	case FailReject:
		c.refusal = replyReject
	default:
		c.refusal = replyTempfail
	}
	return c.refusal
}

func (s *Session) step(r *Reply, by string) Step {
	return Step{Reply: r, By: by, Failed: s.drain()}
}

func (s *Session) drain() []Failed {
	f := s.failed
	s.failed = nil
	return f
}
