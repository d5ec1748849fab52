package milter

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"gw/lib/mailbox"
)

// Transaction is what the milters are told about one message: the
// client, the envelope and the message in stored form (LF line ends).
type Transaction struct {
	// Macros are the values filters ask for by name: j, {daemon_name},
	// {if_addr}, {client_addr}, {client_name}, {auth_authen}, i, ...
	// {mail_addr} and {rcpt_addr} are set here from the envelope.
	Macros     map[string]string
	ClientAddr string // the client's IP address; "" for a local client
	ClientPort uint16
	ClientName string // its host name, or "[addr]" when it has none
	Helo       string
	Sender     string // "" for the null sender
	Rcpts      []string
	Message    []byte
}

// Reply is a refusal a milter gave, or a default action's.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Outcome is the list's verdict. When Reply is set the message is
// refused with it; when Discard is set it is accepted and dropped.
// Otherwise Sender, Rcpts and Message are what goes to the queue.
type Outcome struct {
	Reply      *Reply
	Discard    bool
	By         string // the milter whose verdict or failure decided
	Sender     string
	Rcpts      []string
	Message    []byte
	Quarantine []string // "name: reason" for each milter that asked
	Failed     []Failed // milters that failed and were passed by (default=accept)
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

// Run passes the transaction through the milters in order. Each milter
// sees the message as the ones before it left it.
func Run(list []Milter, tx Transaction) Outcome {
	out := Outcome{Sender: tx.Sender, Rcpts: append([]string(nil), tx.Rcpts...), Message: tx.Message}
	for _, m := range list {
		cur := tx
		cur.Sender, cur.Rcpts, cur.Message = out.Sender, out.Rcpts, out.Message
		v, err := check(m, cur)
		if err != nil {
			switch m.Default {
			case FailAccept:
				out.Failed = append(out.Failed, Failed{m.Name, err})
				continue
			case FailReject:
				out.Reply = replyReject
			default:
				out.Reply = replyTempfail
			}
			out.By = m.Name
			out.Failed = append(out.Failed, Failed{m.Name, err})
			return out
		}
		if v.reply != nil || v.discard {
			out.Reply, out.Discard, out.By = v.reply, v.discard, m.Name
			return out
		}
		out.Sender, out.Rcpts, out.Message = v.sender, v.rcpts, v.message
		if v.quarantine != "" {
			out.Quarantine = append(out.Quarantine, m.Name+": "+v.quarantine)
		}
		if len(v.changes) > 0 {
			out.Changes = append(out.Changes, m.Name+": "+strings.Join(v.changes, ", "))
		}
	}
	return out
}

// verdict is one milter's answer.
type verdict struct {
	reply      *Reply
	discard    bool
	sender     string
	rcpts      []string
	message    []byte
	quarantine string
	changes    []string
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

// check runs the whole conversation with one milter. An error is the
// milter's failure: its default action applies.
func check(m Milter, tx Transaction) (verdict, error) {
	macros := gomilter.NewMacroBag()
	for k, v := range tx.Macros {
		macros.Set(k, v)
	}
	macros.Set("{mail_addr}", tx.Sender)
	macros.Set("{mail_host}", domainOf(tx.Sender))
	macros.Set("{mail_mailer}", "esmtp")
	s, err := client(m).Session(macros)
	if err != nil {
		return verdict{}, err
	}
	defer s.Close()
	// Stage by stage; a decisive action ends the conversation. An
	// accept means the milter wants nothing more of this message.
	act, err := s.Conn(tx.ClientName, family(tx.ClientAddr), tx.ClientPort, tx.ClientAddr)
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	act, err = s.Helo(tx.Helo)
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	act, err = s.Mail("<"+tx.Sender+">", "")
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	for _, r := range tx.Rcpts {
		macros.Set("{rcpt_addr}", r)
		macros.Set("{rcpt_host}", domainOf(r))
		macros.Set("{rcpt_mailer}", "esmtp")
		act, err = s.Rcpt("<"+r+">", "")
		// A recipient the milter refuses was accepted at RCPT already;
		// dropping it alone would lose its mail silently, so the
		// refusal is the whole message's.
		if v, done, err := decide(act, err, tx); done {
			return v, err
		}
	}
	act, err = s.DataStart()
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	msg := split(tx.Message)
	lead := s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for _, f := range msg.fields {
		v := f.value
		if !lead {
			v = strings.TrimPrefix(v, " ")
		}
		act, err = s.HeaderField(f.name, v, nil)
		if v, done, err := decide(act, err, tx); done {
			return v, err
		}
	}
	act, err = s.HeaderEnd()
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	mods, act, err := s.BodyReadFrom(bytes.NewReader(crlf(msg.body)))
	if err != nil {
		return verdict{}, err
	}
	if v, done, err := decide(act, nil, tx); done && (v.reply != nil || v.discard) {
		return v, err
	}
	return apply(tx, msg, mods, lead)
}

// decide reads a stage's action: done when the conversation ends here,
// with the verdict (refusal, discard, or accept unchanged) or the error.
func decide(act *gomilter.Action, err error, tx Transaction) (verdict, bool, error) {
	if err != nil {
		return verdict{}, true, err
	}
	v := verdict{sender: tx.Sender, rcpts: tx.Rcpts, message: tx.Message}
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return v, false, nil
	case gomilter.ActionAccept:
		return v, true, nil
	case gomilter.ActionDiscard:
		v.discard = true
		return v, true, nil
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r, err := parseReply(int(act.SMTPCode), act.SMTPReply)
		if err != nil {
			return verdict{}, true, err
		}
		v.reply = r
		return v, true, nil
	}
	return verdict{}, true, fmt.Errorf("milter answered %v", act)
}

var enhanced = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// parseReply reads a milter's SMTP reply, which may span lines
// (smfi_setmlreply); the text of its lines is joined. A code outside
// 4xx/5xx, or an enhanced code of another class, is the milter's error.
func parseReply(code int, raw string) (*Reply, error) {
	if code < 400 || code > 599 {
		return nil, fmt.Errorf("milter replied with code %d", code)
	}
	r := &Reply{Code: code}
	var texts []string
	for _, line := range strings.Split(strings.ReplaceAll(raw, "\r\n", "\n"), "\n") {
		if len(line) < 3 || line[:3] != strconv.Itoa(code) {
			return nil, fmt.Errorf("milter reply %q: its lines must carry code %d", raw, code)
		}
		t := strings.TrimLeft(line[3:], " -")
		if e, rest, _ := strings.Cut(t, " "); enhanced.MatchString(e) {
			if e[0] != byte('0'+code/100) {
				return nil, fmt.Errorf("milter reply %q: enhanced code of another class", raw)
			}
			r.Enhanced, t = e, rest
		}
		texts = append(texts, strings.Map(printable, t))
	}
	if r.Enhanced == "" {
		r.Enhanced = strconv.Itoa(code/100) + ".7.1"
	}
	r.Text = strings.Join(texts, " ")
	return r, nil
}

func printable(r rune) rune {
	if r < 32 || r == 127 {
		return -1
	}
	return r
}

var errBadAddress = errors.New("milter gave an address gw would not accept from a client")

// apply carries out the end-of-message modifications in the order the
// milter sent them, each checked as if from a client.
func apply(tx Transaction, msg message, mods []gomilter.ModifyAction, lead bool) (verdict, error) {
	v := verdict{sender: tx.Sender, rcpts: append([]string(nil), tx.Rcpts...)}
	var body *bytes.Buffer
	for _, ma := range mods {
		switch ma.Type {
		case gomilter.ActionAddHeader, gomilter.ActionChangeHeader, gomilter.ActionInsertHeader:
			val := ma.HeaderValue
			if ma.Type != gomilter.ActionChangeHeader || val != "" {
				var err error
				if val, err = fieldValue(ma.HeaderName, val, lead); err != nil {
					return verdict{}, err
				}
			}
			switch ma.Type {
			case gomilter.ActionAddHeader:
				msg.fields = append(msg.fields, field{ma.HeaderName, val})
				v.changes = append(v.changes, "add "+ma.HeaderName)
			case gomilter.ActionChangeHeader:
				msg.change(int(ma.HeaderIndex), ma.HeaderName, val)
				v.changes = append(v.changes, "change "+ma.HeaderName)
			default:
				msg.insert(int(ma.HeaderIndex), ma.HeaderName, val)
				v.changes = append(v.changes, "insert "+ma.HeaderName)
			}
		case gomilter.ActionReplaceBody:
			if body == nil {
				body = &bytes.Buffer{}
				v.changes = append(v.changes, "body")
			}
			body.Write(ma.Body)
		case gomilter.ActionChangeFrom:
			a, err := address(ma.From, true)
			if err != nil {
				return verdict{}, err
			}
			v.sender = a
			v.changes = append(v.changes, "from")
		case gomilter.ActionAddRcpt:
			a, err := address(ma.Rcpt, false)
			if err != nil {
				return verdict{}, err
			}
			if !contains(v.rcpts, a) {
				v.rcpts = append(v.rcpts, a)
			}
			v.changes = append(v.changes, "addrcpt")
		case gomilter.ActionDelRcpt:
			a := gomilter.RemoveAngle(ma.Rcpt)
			for i := 0; i < len(v.rcpts); i++ {
				if strings.EqualFold(v.rcpts[i], a) {
					v.rcpts = append(v.rcpts[:i], v.rcpts[i+1:]...)
					i--
				}
			}
			v.changes = append(v.changes, "delrcpt")
		case gomilter.ActionQuarantine:
			v.quarantine = strings.Map(printable, ma.Reason)
			if v.quarantine == "" {
				v.quarantine = "quarantined"
			}
			v.changes = append(v.changes, "quarantine")
		}
	}
	if len(v.rcpts) == 0 {
		// Every recipient deleted: nothing is left to deliver, which is
		// what a discard says.
		v.discard = true
	}
	if body != nil {
		msg.body = stored(body.Bytes())
	}
	v.message = msg.bytes()
	return v, nil
}

// address checks an address a milter gives for the envelope.
func address(s string, sender bool) (string, error) {
	p := gomilter.RemoveAngle(strings.TrimSpace(s))
	a, err := mailbox.ParseUTF8(p)
	if err != nil || (a.Null && !sender) || (!sender && a.Domain == "" && !a.Postmaster()) {
		return "", fmt.Errorf("%w: %q", errBadAddress, s)
	}
	return a.String(), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

func family(addr string) gomilter.ProtoFamily {
	ip, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		return gomilter.FamilyUnknown
	case ip.Unmap().Is4():
		return gomilter.FamilyInet
	}
	return gomilter.FamilyInet6
}
