// Package authres writes the gateway's one Authentication-Results header
// field (RFC 8601) from the results of lib/spf, lib/dkim, lib/dmarc and
// lib/arc, and removes the fields a message brings that claim the
// gateway's authserv-id: only the gateway may speak in its name, and a
// field forged by the sender would otherwise be read downstream as the
// gateway's verdict (RFC 8601 §5).
//
// Values are written by github.com/emersion/go-msgauth/authres, which
// quotes what needs quoting; this package orders and folds the results.
package authres

import (
	"strconv"
	"strings"

	msgauthres "github.com/emersion/go-msgauth/authres"

	"gw/lib/arc"
	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/spf"
)

// FieldName is the header field's name.
const FieldName = "Authentication-Results"

// Report is what the gateway found out about one message. A zero part
// was not checked and is left out.
type Report struct {
	SPF         []spf.Result  // HELO and MAIL FROM, as checked
	DKIM        []dkim.Result // every signature; empty with DKIMChecked gives dkim=none
	DKIMChecked bool
	DMARC       *dmarc.Result
	ARC         *arc.Result
	RemoteIP    string // for arc's smtp.remote-ip
}

// Results is the part after the authserv-id: "method=result props" for
// each result, separated by ";" and a folded line, or "none" when
// nothing was checked. ARC-Authentication-Results carries the same text.
func Results(r Report) string {
	var parts []string
	add := func(res msgauthres.Result) {
		sanitize(res)
		// Format with an empty identity gives "; method=value props".
		s := strings.TrimPrefix(msgauthres.Format("", []msgauthres.Result{res}), "; ")
		parts = append(parts, strings.TrimSpace(s))
	}
	for _, s := range r.SPF {
		if s.Value == "" {
			continue
		}
		res := &msgauthres.SPFResult{Value: msgauthres.ResultValue(s.Value), Reason: s.Reason}
		if s.Identity == spf.IdentityHelo {
			res.Helo = strings.TrimPrefix(s.Sender, "postmaster@")
		} else {
			res.From = s.Sender
		}
		add(res)
	}
	if r.DKIMChecked && len(r.DKIM) == 0 {
		add(&msgauthres.DKIMResult{Value: msgauthres.ResultNone})
	}
	for _, d := range r.DKIM {
		params := map[string]string{"header.d": d.Domain, "header.i": d.Identifier, "header.s": d.Selector,
			"header.a": d.Alg, "header.b": d.B, "reason": d.Reason}
		add(&msgauthres.GenericResult{Method: "dkim", Value: msgauthres.ResultValue(d.Value), Params: params})
	}
	if r.DMARC != nil {
		params := map[string]string{"header.from": r.DMARC.From, "reason": r.DMARC.Reason}
		if r.DMARC.Policy != "" {
			params["policy.dmarc"] = r.DMARC.Policy
		}
		add(&msgauthres.GenericResult{Method: "dmarc", Value: msgauthres.ResultValue(r.DMARC.Value), Params: params})
	}
	if r.ARC != nil {
		params := map[string]string{"smtp.remote-ip": r.RemoteIP, "reason": r.ARC.Reason}
		if r.ARC.Value == arc.Pass {
			// how far back the message is as its sealers signed it: 0
			// when every message signature still verifies (RFC 8617 §5.2)
			params["header.oldest-pass"] = strconv.Itoa(r.ARC.OldestPass)
		}
		add(&msgauthres.GenericResult{Method: "arc", Value: msgauthres.ResultValue(r.ARC.Value), Params: params})
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ";\r\n\t")
}

// sanitize makes every text a result carries safe to write into a
// header: they come from the message and from DNS (a d= tag, a
// resolver's error text), and a CR, an LF, a backslash or a quote there
// would let a sender write the gateway's header for it.
func sanitize(res msgauthres.Result) {
	switch r := res.(type) {
	case *msgauthres.SPFResult:
		r.Reason, r.From, r.Helo = clean(r.Reason), clean(r.From), clean(r.Helo)
	case *msgauthres.GenericResult:
		for k, v := range r.Params {
			r.Params[k] = clean(v)
		}
	}
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r >= 0x7f || r == '\\' || r == '"' || r == '(' || r == ')' {
			return '?'
		}
		return r
	}, s)
}

// Field is the whole header field, ending CRLF.
func Field(authservID string, r Report) string {
	return FieldName + ": " + authservID + ";\r\n\t" + Results(r) + "\r\n"
}

// ClaimsID reports whether an Authentication-Results value names id as
// its authserv-id (case-insensitive, as RFC 8601 §2.5 compares it; a
// version after the id and comments before it allowed).
func ClaimsID(value, id string) bool {
	v := strings.TrimSpace(stripComments(value))
	first, _, _ := strings.Cut(v, ";")
	fields := strings.Fields(first)
	if len(fields) == 0 {
		return false
	}
	claimed := strings.Trim(fields[0], `"`)
	return strings.EqualFold(strings.TrimSuffix(claimed, "."), strings.TrimSuffix(id, "."))
}

func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// RemoveClaiming returns the message (LF or CRLF) without the header
// fields named Authentication-Results whose authserv-id is id; the rest
// of the message, byte for byte, is kept. It also reports how many it
// removed, for the log.
func RemoveClaiming(msg []byte, id string) ([]byte, int) {
	out := make([]byte, 0, len(msg))
	removed := 0
	dropping := false
	rest := msg
	for len(rest) > 0 {
		end := strings.IndexByte(string(rest), '\n')
		line := rest
		if end >= 0 {
			line = rest[:end+1]
		}
		rest = rest[len(line):]
		trimmed := strings.TrimRight(string(line), "\r\n")
		if trimmed == "" {
			out = append(out, line...)
			out = append(out, rest...)
			break
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			if !dropping {
				out = append(out, line...)
			}
			continue
		}
		name, value, ok := strings.Cut(trimmed, ":")
		dropping = ok && strings.EqualFold(strings.TrimSpace(name), FieldName) && ClaimsID(value+continuation(rest), id)
		if dropping {
			removed++
			continue
		}
		out = append(out, line...)
	}
	return out, removed
}

// continuation is the folded rest of a field whose first line was just
// read: the authserv-id may sit on the next line.
func continuation(rest []byte) string {
	var b strings.Builder
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		end := strings.IndexByte(string(rest), '\n')
		if end < 0 {
			b.Write(rest)
			break
		}
		b.Write(rest[:end])
		rest = rest[end+1:]
	}
	return b.String()
}
