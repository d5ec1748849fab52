package milter

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"gw/lib/mailbox"
)

// verdict is one milter's answer to the message.
type verdict struct {
	reply      *Reply
	discard    bool
	sender     string
	rcpts      []string
	message    []byte
	quarantine string
	changes    []string
}

// bodyChunk is the size of the body's pieces: the protocol's smallest
// limit, which every milter takes.
const bodyChunk = int(gomilter.DataSize64K)

// message tells one milter the message, from DATA to its end, and
// carries out what it asks. An error is the milter's failure.
func (s *Session) message(c *conn, tx Transaction) (verdict, error) {
	cs := c.cs
	act, err := cs.DataStart()
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	msg := split(tx.Message)
	for _, f := range msg.fields {
		v := f.value
		if !c.lead {
			v = strings.TrimPrefix(v, " ")
		}
		act, err = cs.HeaderField(f.name, v, nil)
		if v, done, err := decide(act, err, tx); done {
			return v, err
		}
	}
	act, err = cs.HeaderEnd()
	if v, done, err := decide(act, err, tx); done {
		return v, err
	}
	// At least one chunk, empty for an empty body: the end of the
	// message follows a body.
	body := crlf(msg.body)
	for first := true; (first || len(body) > 0) && !cs.Skip(); first = false {
		n := min(len(body), bodyChunk)
		act, err = cs.BodyChunk(body[:n])
		body = body[n:]
		if v, done, err := decide(act, err, tx); done {
			return v, err
		}
	}
	mods, act, err := cs.End()
	if err != nil {
		return verdict{}, err
	}
	if v, done, err := decide(act, nil, tx); done && (v.reply != nil || v.discard) {
		return v, err
	}
	return apply(tx, msg, mods, c.lead)
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
