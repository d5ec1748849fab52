package smtpd

import (
	"bytes"
	"crypto/tls"
	"net/netip"
	"strconv"
	"strings"

	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/milter"
	"gw/lib/smtpserver"
)

// Milters (gw-milters(5)) follow the session: each is told MAIL and
// every RCPT as the client gives them (milterMail, milterRcpt), so its
// refusal of a recipient is that RCPT's reply; at the end of the message
// they, and message authentication, need the whole message before it is
// queued: a refusal is the reply to the dot, and what they add or change
// goes into the queued message. Such a message is spooled in memory
// (msgauth.go's spool), judged at its end, and only then handed to the
// injector.

var (
	errTooBigToCheck = reply(552, "5.3.4", "message too big to check")
)

// pickMilters sets the client's milters at connect: the face's list, or
// the ones its tcprules rule names in MILTERS. A MILTERS naming an
// unknown milter runs them all: a typo must not let mail past a filter.
func (s *session) pickMilters() {
	list, err := milter.Select(s.cfg.Milters, s.cl.Milters, s.cl.HasMilters)
	if err != nil {
		s.log("warning", "milter_config", "err", err)
		list = s.cfg.Milters
	}
	s.milters = list
}

// spooling reports whether this transaction's message waits in a spool.
func (s *session) spooling() bool {
	return len(s.milters) > 0 || s.authing()
}

// spooledEnd judges the spooled message (authentication, then the
// milters on the message as it would be queued), then starts the
// injector and gives it the result. It returns the transaction to
// commit, nil with a nil reply for a message a milter discarded, or the
// reply that refuses it.
func (s *session) spooledEnd(ss *smtpserver.Session, p *spool, msgID string) (handoff.Tx, *smtpserver.Reply) {
	s.hold = "" // an earlier message's, whose milters refused it
	if p.over {
		s.log("info", "refused", "msg", msgID, "code", 552, "reason", "too big to check")
		return nil, errTooBigToCheck
	}
	var msg bytes.Buffer
	msg.WriteString(s.received(msgID))
	if ss.Mail != nil {
		// the fields the checks at MAIL and RCPT decided
		for _, f := range ss.Mail.Prepend {
			msg.WriteString(f)
		}
	}
	body := p.buf.Bytes()
	if !s.cl.Peer {
		var n int
		if body, n = removeMarks(body); n > 0 {
			s.log("info", "mark_removed", "msg", msgID, "field", markField, "count", n)
		}
	}
	if s.authing() {
		head, out, r := s.authEnd(body, msgID)
		if r != nil {
			return nil, r
		}
		msg.WriteString(head)
		body = out
	}
	msg.Write(body)
	env := s.txEnvelope()
	data := msg.Bytes()
	if s.milt != nil {
		var r *smtpserver.Reply
		if env, data, r = s.runMilters(env, data, msgID); r != nil || data == nil {
			return nil, r
		}
	}
	if s.hold != "" {
		return nil, s.holdMessage(env, data, msgID)
	}
	tx, err := begin(s.cl.Injector, s.id, env)
	if err != nil {
		s.log("warning", "refused", "msg", msgID, "code", 451, "err", err)
		return nil, errNoInjector
	}
	tx.Write(data)
	return tx, nil
}

// milterMail tells the client's milters of a new sender, opening their
// side of the session at the first MAIL. A reply refuses the sender.
func (s *session) milterMail(ss *smtpserver.Session, from string) *smtpserver.Reply {
	if len(s.milters) == 0 {
		return nil
	}
	s.waiting()
	if s.milt == nil {
		port, _ := strconv.ParseUint(s.cl.RemotePort, 10, 16)
		s.milt = milter.Open(s.milters, milter.Client{
			Macros: s.milterMacros(ss, s.clientName()),
			Addr:   s.cl.RemoteIP,
			Port:   uint16(port),
			Name:   s.clientName(),
			Helo:   s.helo,
		})
	}
	// i is the id the message will have in gw's log (Data gives it): the
	// queue id is not known before the injector has run.
	macros := map[string]string{"i": s.id + "." + strconv.Itoa(s.msgs+1)}
	if s.authUser != "" {
		macros["{auth_authen}"] = s.authUser
	}
	st := s.milt.Mail(from, macros)
	s.logMilterFailed("", st.Failed)
	if r := st.Reply; r != nil {
		s.explain("milter %s: refused the sender at MAIL: %d %s", st.By, r.Code, r.Text)
		s.log("info", "mail", "from", from, "result", "reject", "code", r.Code, "reason", "milter", "milter", st.By, "text", r.Text)
		return reply(r.Code, r.Enhanced, r.Text)
	}
	return nil
}

// milterRcpt asks the milters about one recipient; a reply is that
// recipient's refusal alone, the transaction goes on.
func (s *session) milterRcpt(addr string) *smtpserver.Reply {
	if s.milt == nil {
		return nil
	}
	s.waiting()
	st := s.milt.Rcpt(addr)
	s.logMilterFailed("", st.Failed)
	if r := st.Reply; r != nil {
		s.explain("milter %s: refused %s at RCPT, this recipient alone: %d %s", st.By, addr, r.Code, r.Text)
		return s.refuseRcpt(addr, reply(r.Code, r.Enhanced, r.Text), "milter "+st.By+": "+r.Text)
	}
	return nil
}

func (s *session) logMilterFailed(msgID string, failed []milter.Failed) {
	for _, f := range failed {
		kv := []any{"milter", f.Name, "err", f.Err}
		if msgID != "" {
			kv = append([]any{"msg", msgID}, kv...)
		}
		s.log("warning", "milter_failed", kv...)
	}
}

// clientName is the client as milters name it: its host name, or
// "[addr]" when it has none.
func (s *session) clientName() string {
	if s.cl.HasRemoteHost && s.cl.RemoteHost != "" {
		return s.cl.RemoteHost
	}
	return "[" + s.cl.RemoteIP + "]"
}

// runMilters passes the message through the client's milters. It returns
// the envelope and message to queue, a nil message for a discard, or the
// refusal.
func (s *session) runMilters(env envelope.Envelope, data []byte, msgID string) (envelope.Envelope, []byte, *smtpserver.Reply) {
	s.waiting()
	out := s.milt.End(milter.Transaction{
		Macros:  map[string]string{"i": msgID},
		Sender:  env.Sender,
		Rcpts:   env.Recipients,
		Message: data,
	})
	s.explainMilters(out)
	s.logMilterFailed(msgID, out.Failed)
	for _, c := range out.Changes {
		s.log("info", "milter_changed", "msg", msgID, "changes", c)
	}
	switch {
	case out.Reply != nil:
		r := out.Reply
		s.log("info", "refused", "msg", msgID, "code", r.Code, "reason", "milter", "milter", out.By, "text", r.Text)
		return env, nil, reply(r.Code, r.Enhanced, r.Text)
	case out.Discard:
		// A discard is the milter's accept-and-drop, as behind Postfix:
		// the client is told ok, and the log says where the mail went.
		s.log("info", "discarded", "msg", msgID, "milter", out.By, "from", env.Sender, "rcpts", len(env.Recipients))
		return env, nil, nil
	}
	data = out.Message
	if len(out.Quarantine) > 0 {
		// the same mark DMARC's quarantine leaves (gw-auth(5)): gw-scan
		// and the inside servers' filters act on it
		var q bytes.Buffer
		for _, reason := range out.Quarantine {
			q.WriteString("X-Gw-Quarantine: milter; " + sanitize(reason) + "\n")
		}
		data = append(q.Bytes(), data...)
	}
	return withDSN(env, out.Sender, out.Rcpts), data, nil
}

// withDSN is the envelope the milters left (sender, recipients) with the
// DSN parameters of before: the message's, and each recipient's that
// the milters kept; a recipient they added asked for nothing.
func withDSN(before envelope.Envelope, sender string, rcpts []string) envelope.Envelope {
	asked := make(map[string]dsn.Rcpt, len(before.Recipients))
	for i, r := range before.Recipients {
		if _, seen := asked[r]; !seen {
			asked[r] = before.RcptDSNOf(i)
		}
	}
	env := envelope.Envelope{Sender: sender, DSN: before.DSN, RequireTLS: before.RequireTLS}
	for _, r := range rcpts {
		env.Add(r, asked[r])
	}
	return env
}

// milterMacros are the connection's values milters read, named as
// Sendmail and Postfix name them.
func (s *session) milterMacros(ss *smtpserver.Session, clientName string) map[string]string {
	m := map[string]string{
		"j":             s.cfg.Hostname,
		"v":             "gw",
		"_":             clientName + " [" + s.cl.RemoteIP + "]",
		"{daemon_name}": "gw-smtpd",
		"{daemon_addr}": s.cl.LocalIP,
		"{if_addr}":     s.cl.LocalIP,
		"{if_name}":     s.cl.LocalHost,
		"{client_addr}": s.cl.RemoteIP,
		"{client_port}": s.cl.RemotePort,
		"{client_name}": clientName,
		"{client_ptr}":  clientName,
	}
	if ip, err := netip.ParseAddr(s.cl.RemoteIP); err != nil || !ip.IsValid() {
		delete(m, "{client_addr}")
	}
	if ss.TLS != nil {
		m["{tls_version}"] = tls.VersionName(ss.TLS.Version)
	}
	if s.authUser != "" {
		m["{auth_authen}"] = s.authUser
	}
	return m
}

// explainMilters tells the session test the milters' verdict.
func (s *session) explainMilters(out milter.Outcome) {
	if s.cfg.Explain == nil {
		return
	}
	names := make([]string, len(s.milters))
	for i, m := range s.milters {
		names[i] = m.Name
	}
	ran := "milters " + strings.Join(names, ", ")
	switch {
	case out.Reply != nil:
		s.explain("%s: refused by %s: %d %s", ran, out.By, out.Reply.Code, out.Reply.Text)
	case out.Discard:
		s.explain("%s: discarded by %s: the client is told ok, nothing is delivered", ran, out.By)
	default:
		s.explain("%s: accepted, %d change(s), %d quarantine mark(s), %d failed and passed by", ran, len(out.Changes), len(out.Quarantine), len(out.Failed))
	}
}
