package sessiontest

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"gw/lib/acl"
)

// Client is the session's client as the admin names it.
type Client struct {
	IP        netip.Addr
	Host      string         // TCPREMOTEHOST; "" leaves it unset, as tcpserver -H does
	Local     netip.AddrPort // the listener's address: TCPLOCALIP, TCPLOCALPORT
	LocalHost string         // TCPLOCALHOST; "" leaves it unset
	ACL       string         // the compiled rules (gw-tcprules); "" : none, as a listener without --acl
	Env       []string       // NAME=VALUE, set after the rule's own, to try a change before making it
}

// Environment returns the environment tcpserver would give the client:
// its own variables, then the ACL rule's assignments, then c.Env. denied
// reports a rule that denies the client, which tcpserver drops without
// a word. Each step is told to explain.
func (c Client) Environment(explain func(string)) (env map[string]string, denied bool, err error) {
	ip := acl.RemoteIP(c.IP)
	env = map[string]string{
		"PROTO":         "TCP",
		"TCPREMOTEIP":   ip,
		"TCPREMOTEPORT": "0",
		"TCPLOCALIP":    acl.RemoteIP(c.Local.Addr()),
		"TCPLOCALPORT":  strconv.Itoa(int(c.Local.Port())),
	}
	if c.IP.Unmap().Is6() {
		env["PROTO"] = "TCP6"
	}
	if c.Host != "" {
		env["TCPREMOTEHOST"] = strings.ToLower(c.Host)
	}
	if c.LocalHost != "" {
		env["TCPLOCALHOST"] = c.LocalHost
	}
	client := ip
	if c.Host != "" {
		client += " (" + env["TCPREMOTEHOST"] + ")"
	}
	explain("client " + client + " to " + c.Local.String())
	if c.ACL == "" {
		explain("acl: no rules database: every client allowed, environment unchanged")
	} else {
		d, err := lookup(c.ACL, acl.Remote{IP: ip, Host: env["TCPREMOTEHOST"], HasHost: c.Host != ""})
		if err != nil {
			return nil, false, err
		}
		explainRule(c.ACL, d, explain)
		if d.Found {
			env["GW_ACLRULE"] = strconv.Itoa(d.Line)
		}
		if d.Deny {
			return env, true, nil
		}
		for _, kv := range d.Assignments() {
			env[kv[0]] = kv[1]
		}
	}
	for _, item := range c.Env {
		k, v, ok := strings.Cut(item, "=")
		if !ok || k == "" {
			return nil, false, fmt.Errorf("--env %q: not NAME=VALUE", item)
		}
		env[k] = v
		explain(fmt.Sprintf("env: %s=%q set by --env, over the rule's", k, v))
	}
	return env, false, nil
}

func lookup(path string, r acl.Remote) (acl.Decision, error) {
	db, err := acl.Open(path)
	if err != nil {
		return acl.Decision{}, fmt.Errorf("rules database: %w", err)
	}
	defer db.Close()
	return db.Lookup(r)
}

// explainRule tells which rules line decided, as gw-tcprulescheck
// --explain does, and what it set.
func explainRule(path string, d acl.Decision, explain func(string)) {
	if !d.Found {
		explain("acl: " + path + ": no rule matched: allowed, environment unchanged")
		return
	}
	text := d.Text
	if text == "" {
		text = "(the database keeps no text)"
	}
	explain(fmt.Sprintf("acl: %s: line %d decides (key %q): %s", path, d.Line, d.Key, text))
	if d.Deny {
		explain("acl: the rule denies: tcpserver drops the connection without a reply")
		return
	}
	for _, kv := range d.Assignments() {
		explain(fmt.Sprintf("acl: sets %s=%q", kv[0], kv[1]))
	}
}

// Meaning explains the variables of env that steer gw-smtpd's policy,
// in a stable order.
func Meaning(env map[string]string) []string {
	var out []string
	if v, ok := env["RELAYCLIENT"]; ok {
		s := "RELAYCLIENT is set: the client may relay to any domain; no DNSBL, no greylisting"
		if v != "" {
			s += fmt.Sprintf("; %q is appended to each recipient", v)
		}
		out = append(out, s)
	} else {
		out = append(out, "RELAYCLIENT is not set: only the domains of rcpthosts/morercpthosts are accepted")
	}
	if v, ok := env["RBLSMTPD"]; ok {
		if v == "" {
			out = append(out, "RBLSMTPD is set empty: the client is never DNSBL-listed")
		} else {
			out = append(out, fmt.Sprintf("RBLSMTPD=%q: the client is refused as listed", v))
		}
	}
	if _, ok := env["GW_NOGREYLIST"]; ok {
		out = append(out, "GW_NOGREYLIST is set: no greylisting")
	}
	var rest []string
	for k, v := range env {
		switch {
		case strings.HasPrefix(k, "RATE_"), k == "DATABYTES", k == "MILTERS", k == "SPFPOLICY", k == "DMARCPOLICY",
			k == "ARCSEAL", k == "QMAILQUEUE", k == "GW_QUEUED", k == "GW_QUEUE":
			rest = append(rest, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}
