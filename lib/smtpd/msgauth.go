package smtpd

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"gw/lib/authcheck"
	"gw/lib/smtpserver"
)

// Message authentication (gw-auth(5)) in the session: SPF at MAIL; at the
// end of the message DKIM, ARC and DMARC, the Authentication-Results
// field, signing and sealing. The checks need the whole message before it
// is queued (a DMARC reject is answered at the end of DATA, and the
// fields go on top), so a message they see is spooled in memory, not
// streamed to the injector.

// maxSpool bounds a spooled message; databytes usually bounds it first.
const maxSpool = 64 << 20

// endTimeout bounds the end-of-message checks' DNS: an answer that does
// not come in time is a temperror, which rejects nothing.
const endTimeout = 30 * time.Second

var (
	errAuthTemporary = reply(451, "4.7.0", "message authentication failed temporarily")
)

// face computes the client's authentication settings once, at connect.
func (s *session) face() authcheck.Face {
	env := func(k string) (string, bool) {
		switch k {
		case "SPFPOLICY":
			return s.cl.SPFPolicy, s.cl.HasSPFPolicy
		case "DMARCPOLICY":
			return s.cl.DMARCPolicy, s.cl.HasDMARCPolicy
		case "ARCSEAL":
			return "", s.cl.ARCSeal
		}
		return "", false
	}
	f, err := s.cfg.MsgAuth.Config().ForClient(env)
	if err != nil {
		s.log("warning", "auth_config", "err", err)
	}
	return f
}

// spfAtMail checks SPF for the transaction just started; a reply refuses
// the sender.
func (s *session) spfAtMail(ss *smtpserver.Session) *smtpserver.Reply {
	if s.cfg.MsgAuth == nil {
		return nil
	}
	ip, _ := netip.ParseAddr(s.cl.RemoteIP)
	s.atx = &authcheck.Transaction{Face: s.authFace, Client: ip, Helo: ss.Helo,
		Sender: s.from.String(), Relaying: s.relays(), HeloSPF: s.heloSPF}
	if s.from.Null {
		s.atx.Sender = ""
	}
	s.waiting()
	r := s.cfg.MsgAuth.Mail(context.Background(), s.atx)
	s.heloSPF = s.atx.HeloSPF
	for _, res := range s.atx.SPF() {
		s.log("info", "spf", "identity", res.Identity, "domain", res.Domain, "result", res.Value, "reason", res.Reason)
	}
	if r != nil {
		s.log("info", "mail", "from", s.from.String(), "result", "reject", "reason", "spf")
		return reply(r.Code, r.Enhanced, r.Text)
	}
	return nil
}

// spool is where a message waits for its checks: a Tx the core's
// MessageWriter fills, never committed itself.
type spool struct {
	buf  bytes.Buffer
	over bool
}

func (p *spool) Write(b []byte) (int, error) {
	if p.buf.Len()+len(b) > maxSpool {
		p.over = true
	}
	if !p.over {
		p.buf.Write(b)
	}
	return len(b), nil
}

func (p *spool) Commit() (int, error) { return 0, errors.New("a spool is not an injector") }
func (p *spool) Abort()               { p.buf = bytes.Buffer{} }

// authing reports whether this transaction's message goes through the
// checks.
func (s *session) authing() bool {
	return s.cfg.MsgAuth != nil && s.atx != nil && s.cfg.MsgAuth.Needed(s.atx)
}

// authEnd runs the end-of-message checks on the spooled message. It
// returns the fields they put on top and the message they leave, or the
// reply that refuses it.
func (s *session) authEnd(msg []byte, msgID string) (string, []byte, *smtpserver.Reply) {
	// the client waits for the reply to its dot: DNS gets half a minute
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	s.waiting()
	out, err := s.cfg.MsgAuth.End(ctx, s.atx, msg)
	if err != nil {
		s.log("warning", "refused", "msg", msgID, "code", 451, "reason", "auth", "err", err)
		return "", nil, errAuthTemporary
	}
	s.logAuth(msgID, out)
	if out.ReportErr != nil {
		s.log("warning", "dmarc_record", "msg", msgID, "err", out.ReportErr)
	}
	if out.Refuse != nil {
		s.log("info", "refused", "msg", msgID, "code", out.Refuse.Code, "reason", "dmarc")
		return "", nil, reply(out.Refuse.Code, out.Refuse.Enhanced, out.Refuse.Text)
	}
	var head strings.Builder
	s.hold = ""
	if out.Quarantine {
		// DMARC asked for quarantine: the mark the inside servers'
		// filters act on (gw-auth(5)), kept on a held message too, so
		// that one released still says what DMARC found.
		head.WriteString("X-Gw-Quarantine: dmarc; " + sanitize(out.Reason) + "\n")
		if !s.cfg.MsgAuth.Config().TagOnly && s.cfg.Quarantine != nil {
			s.hold = "dmarc: " + out.Reason
		}
	}
	for _, f := range out.Prepend {
		head.WriteString(f)
	}
	return head.String(), out.Message, nil
}

func (s *session) logAuth(msgID string, out authcheck.Outcome) {
	kv := []any{"msg", msgID}
	for _, d := range out.DKIM {
		kv = append(kv, "dkim", d.Value+":"+d.Domain)
	}
	if out.ARC != nil {
		kv = append(kv, "arc", out.ARC.Value)
	}
	if out.DMARC != nil {
		kv = append(kv, "dmarc", out.DMARC.Value, "policy", out.DMARC.Policy, "from_domain", out.DMARC.From)
	}
	if out.Reason != "" {
		kv = append(kv, "reason", out.Reason)
	}
	if out.Removed > 0 {
		kv = append(kv, "ar_removed", out.Removed)
	}
	kv = append(kv, "fields", len(out.Prepend), "quarantine", out.Quarantine)
	s.log("info", "auth", kv...)
}
