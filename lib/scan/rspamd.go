package scan

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Rspamd is an rspamd normal worker (or its proxy in self-scan mode)
// reached over HTTP on TCP ("host:port") or a unix socket (a path
// beginning with '/', or "unix:PATH"), asked with POST /checkv2: the
// message is the body, the envelope and the client are request headers.
type Rspamd struct {
	Addr    string
	Timeout time.Duration
	// MaxSize is the largest message sent; larger ones are not checked
	// (skipped, as for spamd), rspamd's own max_message being the bound
	// it would refuse them at.
	MaxSize int64
	client  *http.Client
}

// Meta is what rspamd is told about a message besides its bytes: the
// envelope and the SMTP client as the listener that took it saw it.
// Empty fields are not sent.
type Meta struct {
	From     string
	Rcpts    []string
	IP       string // the client's address
	Helo     string
	Hostname string // the client's name, when the listener knew one
	User     string // the authenticated user
	QueueID  string
}

// RspamdResult is rspamd's answer about one message.
type RspamdResult struct {
	Action        string // "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"
	Score         float64
	Required      float64
	Symbols       []string // the symbols that hit, sorted
	Subject       string   // the new Subject for "rewrite subject"
	Message       string   // rspamd's smtp_message, for a refusal
	AddHeaders    []HeaderField
	RemoveHeaders map[string]int // lower-case name → 0 all, n the nth, -n the nth from the end
}

// HeaderField is one field rspamd asks to add.
type HeaderField struct {
	Name, Value string
}

// The actions rspamd may answer.
const (
	RspamdNoAction       = "no action"
	RspamdGreylist       = "greylist"
	RspamdAddHeader      = "add header"
	RspamdRewriteSubject = "rewrite subject"
	RspamdSoftReject     = "soft reject"
	RspamdReject         = "reject"
)

// maxRspamdReply bounds rspamd's JSON reply: symbols with their options
// can be long, but not without end.
const maxRspamdReply = 1 << 20

func (r *Rspamd) httpClient() *http.Client {
	if r.client != nil {
		return r.client
	}
	network, addr := "tcp", r.Addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	r.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		// Kept-alive connections: a message costs one request, not one
		// TCP handshake, in the proxy and in a long-lived caller.
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
	return r.client
}

// Check sends size bytes of body to rspamd with m as its headers.
// Unreachable, slow or failing rspamd is an error, never "no action".
func (r *Rspamd) Check(ctx context.Context, body io.Reader, size int64, m Meta) (RspamdResult, error) {
	if r.MaxSize > 0 && size > r.MaxSize {
		return RspamdResult{}, ErrTooBig
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://rspamd/checkv2", io.LimitReader(body, size))
	if err != nil {
		return RspamdResult{}, fmt.Errorf("rspamd %s: %w", r.Addr, err)
	}
	req.ContentLength = size
	setMeta(req.Header, m)
	resp, err := r.httpClient().Do(req)
	if err != nil {
		return RspamdResult{}, fmt.Errorf("rspamd %s: %w", r.Addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRspamdReply+1))
	if err != nil {
		return RspamdResult{}, fmt.Errorf("rspamd %s: reading the reply: %w", r.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return RspamdResult{}, fmt.Errorf("rspamd %s: HTTP %d: %s", r.Addr, resp.StatusCode, truncate(strings.TrimSpace(string(b)), 200))
	}
	if len(b) > maxRspamdReply {
		return RspamdResult{}, fmt.Errorf("rspamd %s: reply over %d bytes", r.Addr, maxRspamdReply)
	}
	res, err := ParseRspamdReply(b)
	if err != nil {
		return res, fmt.Errorf("rspamd %s: %w", r.Addr, err)
	}
	return res, nil
}

// setMeta writes m as rspamd's request headers. Values are what a
// listener stored, but are cleaned again: a CR or LF would end the
// header, and net/http refuses such a request rather than sending it.
func setMeta(h http.Header, m Meta) {
	set := func(name, v string) {
		if v = headerSafe(v); v != "" {
			h.Add(name, v)
		}
	}
	// The null sender is "<>" for rspamd: an empty From header would be
	// taken as no envelope at all.
	if m.From == "" {
		h.Set("From", "<>")
	} else {
		set("From", m.From)
	}
	for _, rc := range m.Rcpts {
		set("Rcpt", rc)
	}
	set("IP", m.IP)
	set("Helo", m.Helo)
	set("Hostname", m.Hostname)
	set("User", m.User)
	set("Queue-Id", m.QueueID)
}

func headerSafe(v string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// rspamdReply is the part of /checkv2's JSON gw reads.
type rspamdReply struct {
	Action   *string                    `json:"action"`
	Score    float64                    `json:"score"`
	Required float64                    `json:"required_score"`
	Symbols  map[string]json.RawMessage `json:"symbols"`
	Subject  string                     `json:"subject"`
	Messages map[string]json.RawMessage `json:"messages"`
	Milter   *struct {
		AddHeaders    map[string]json.RawMessage `json:"add_headers"`
		RemoveHeaders map[string]json.RawMessage `json:"remove_headers"`
	} `json:"milter"`
	Error string `json:"error"`
}

// ParseRspamdReply reads /checkv2's JSON reply. An unknown action, a
// reply without one, or an "error" member is an error: a scanner that
// did not decide must not read as clean.
func ParseRspamdReply(b []byte) (RspamdResult, error) {
	var res RspamdResult
	var rr rspamdReply
	if err := json.Unmarshal(b, &rr); err != nil {
		return res, fmt.Errorf("bad JSON reply: %v", err)
	}
	if rr.Error != "" {
		return res, fmt.Errorf("rspamd error: %s", truncate(rr.Error, 200))
	}
	if rr.Action == nil {
		return res, fmt.Errorf("reply has no action")
	}
	switch *rr.Action {
	case RspamdNoAction, RspamdGreylist, RspamdAddHeader, RspamdRewriteSubject, RspamdSoftReject, RspamdReject:
		res.Action = *rr.Action
	default:
		return res, fmt.Errorf("unknown action %q", truncate(*rr.Action, 40))
	}
	res.Score, res.Required, res.Subject = rr.Score, rr.Required, rr.Subject
	for name := range rr.Symbols {
		res.Symbols = append(res.Symbols, name)
	}
	sort.Strings(res.Symbols)
	if raw, ok := rr.Messages["smtp_message"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			res.Message = s
		}
	}
	if rr.Milter != nil {
		var err error
		if res.AddHeaders, err = addHeaders(rr.Milter.AddHeaders); err != nil {
			return res, err
		}
		if res.RemoveHeaders, err = removeHeaders(rr.Milter.RemoveHeaders); err != nil {
			return res, err
		}
	}
	return res, nil
}

// addHeaders reads milter.add_headers: each name maps to a string, to
// {"value": ..., "order": n}, or to a list of those (one field each).
// Fields come out ordered by name, then as listed, so the same reply
// always writes the same header.
func addHeaders(m map[string]json.RawMessage) ([]HeaderField, error) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []HeaderField
	for _, n := range names {
		if !validFieldName(n) {
			return nil, fmt.Errorf("add_headers: bad field name %q", truncate(n, 40))
		}
		raw := m[n]
		var list []json.RawMessage
		if len(raw) > 0 && raw[0] == '[' {
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, fmt.Errorf("add_headers %s: %v", n, err)
			}
		} else {
			list = []json.RawMessage{raw}
		}
		for _, one := range list {
			v, err := headerValue(one)
			if err != nil {
				return nil, fmt.Errorf("add_headers %s: %v", n, err)
			}
			out = append(out, HeaderField{Name: n, Value: v})
		}
	}
	return out, nil
}

func headerValue(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Value *string `json:"value"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Value == nil {
		return "", fmt.Errorf("want a string or {\"value\": ...}")
	}
	return *o.Value, nil
}

// removeHeaders reads milter.remove_headers: name → which instance (0
// all of them, n the nth, -n the nth from the end).
func removeHeaders(m map[string]json.RawMessage) (map[string]int, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := map[string]int{}
	for n, raw := range m {
		if !validFieldName(n) {
			return nil, fmt.Errorf("remove_headers: bad field name %q", truncate(n, 40))
		}
		var i float64
		if err := json.Unmarshal(raw, &i); err != nil || i != float64(int(i)) {
			return nil, fmt.Errorf("remove_headers %s: want an integer", n)
		}
		out[strings.ToLower(n)] = int(i)
	}
	return out, nil
}

// validFieldName: printable ASCII without ':' (RFC 5322 2.2), at most 76
// characters so the field fits a line.
func validFieldName(n string) bool {
	if n == "" || len(n) > 76 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// FieldLine renders a field rspamd asked for as one header line ending in
// LF: a value's line breaks become folds, other control bytes are
// dropped, so rspamd's text cannot start a field of its own.
func (f HeaderField) FieldLine() string {
	var b strings.Builder
	b.WriteString(f.Name + ": ")
	first := true
	for _, l := range strings.Split(f.Value, "\n") {
		l = strings.TrimSpace(headerSafe(l))
		if l == "" {
			continue
		}
		if !first {
			b.WriteString("\n\t")
		}
		b.WriteString(l)
		first = false
	}
	b.WriteByte('\n')
	return b.String()
}

// rspamdWord is the log's word for rspamd's verdict.
func rspamdWord(rep *Report) string {
	switch {
	case rep.RspamdErr == ErrTooBig:
		return "skipped"
	case rep.RspamdErr != nil:
		return "error"
	}
	return rep.Rspamd.Action
}
