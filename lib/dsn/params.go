package dsn

import "strings"

// Param takes one MAIL parameter (key and value as the client wrote
// them). It returns false for a key that is not DSN's, which the caller
// judges itself; a DSN parameter given twice or with a bad value is an
// error (RFC 3461 4: each at most once).
func (m *Mail) Param(key, value string, hasValue bool) (bool, error) {
	switch {
	case strings.EqualFold(key, "RET"):
		if m.Ret != 0 {
			return true, syntax("RET given twice")
		}
		if !hasValue {
			return true, syntax("RET without a value")
		}
		r, err := ParseRet(value)
		m.Ret = r
		return true, err
	case strings.EqualFold(key, "ENVID"):
		if m.EnvID != "" {
			return true, syntax("ENVID given twice")
		}
		if !hasValue {
			return true, syntax("ENVID without a value")
		}
		id, err := ParseEnvID(value)
		m.EnvID = id
		return true, err
	}
	return false, nil
}

// Param takes one RCPT parameter; see Mail.Param.
func (r *Rcpt) Param(key, value string, hasValue bool) (bool, error) {
	switch {
	case strings.EqualFold(key, "NOTIFY"):
		if r.Notify != 0 {
			return true, syntax("NOTIFY given twice")
		}
		if !hasValue {
			return true, syntax("NOTIFY without a value")
		}
		n, err := ParseNotify(value)
		r.Notify = n
		return true, err
	case strings.EqualFold(key, "ORCPT"):
		if r.ORcptType != "" {
			return true, syntax("ORCPT given twice")
		}
		if !hasValue {
			return true, syntax("ORCPT without a value")
		}
		typ, addr, err := ParseORcpt(value)
		if err != nil {
			return true, err
		}
		r.ORcptType, r.ORcpt = typ, addr
		// gw writes it again, in its own encoding: a value that would
		// grow past the limit then is refused now, not at the next hop.
		if n := len(r.orcptValue()); n > MaxORcpt {
			return true, syntax("ORCPT written again is %d characters, over %d", n, MaxORcpt)
		}
		return true, nil
	}
	return false, nil
}

// String is the MAIL parameters, canonical: "RET=HDRS ENVID=xtext",
// either part left out when not given.
func (m Mail) String() string {
	var p []string
	if m.Ret != 0 {
		p = append(p, "RET="+m.Ret.String())
	}
	if m.EnvID != "" {
		p = append(p, "ENVID="+EncodeXtext(m.EnvID))
	}
	return strings.Join(p, " ")
}

// String is the RCPT parameters, canonical: "NOTIFY=... ORCPT=type;xtext".
func (r Rcpt) String() string {
	var p []string
	if r.Notify != 0 {
		p = append(p, "NOTIFY="+r.Notify.String())
	}
	if r.ORcptType != "" {
		p = append(p, "ORCPT="+r.orcptValue())
	}
	return strings.Join(p, " ")
}

// orcptValue is ORCPT's value as gw writes it; a utf-8 address has its
// non-ASCII characters escaped first (RFC 6533), so the value is ASCII.
func (r Rcpt) orcptValue() string {
	addr := r.ORcpt
	if strings.EqualFold(r.ORcptType, "utf-8") {
		addr = encodeUTF8Escapes(addr)
	}
	return r.ORcptType + ";" + EncodeXtext(addr)
}

// ParseMail parses a list of MAIL parameters separated by single spaces,
// every one of them DSN's, as String writes them (and as gw keeps them).
func ParseMail(s string) (Mail, error) {
	var m Mail
	return m, parseList(s, m.Param)
}

// ParseRcpt parses a list of RCPT parameters; see ParseMail.
func ParseRcpt(s string) (Rcpt, error) {
	var r Rcpt
	return r, parseList(s, r.Param)
}

func parseList(s string, param func(k, v string, hasValue bool) (bool, error)) error {
	if s == "" {
		return syntax("no parameters")
	}
	for _, kv := range strings.Split(s, " ") {
		k, v, has := strings.Cut(kv, "=")
		ok, err := param(k, v, has)
		if err != nil {
			return err
		}
		if !ok {
			return syntax("%q is not a DSN parameter", k)
		}
	}
	return nil
}

// Field is ORCPT as a DSN's Original-Recipient field gives it (RFC 3464
// 2.3.1): "type;address", the address decoded, except that a utf-8
// address has its non-ASCII characters escaped (RFC 6533), a field being
// ASCII; "" when ORCPT was not given.
func (r Rcpt) Field() string {
	if r.ORcptType == "" {
		return ""
	}
	addr := r.ORcpt
	if strings.EqualFold(r.ORcptType, "utf-8") {
		addr = encodeUTF8Escapes(addr)
	}
	return r.ORcptType + ";" + addr
}
