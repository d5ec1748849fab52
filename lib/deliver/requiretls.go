package deliver

import (
	"crypto/x509"
	"errors"
	"strings"

	"gw/lib/dane"
	"gw/lib/dsn"
)

// StatusRequireTLS is RFC 8689's status for a message that asked for
// REQUIRETLS and could not have it: permanent, with no fallback to a
// session that protects it less (RFC 8689 5).
const StatusRequireTLS = "5.7.10"

// StartRequireTLS begins a transaction for a message that came with
// REQUIRETLS (RFC 8689 4.2): only on a session in TLS whose server was
// authenticated (PKIX-verified for its name, DANE or MTA-STS; gw-send's
// TLS policy decided which) and that offers REQUIRETLS, which MAIL then
// passes on. Any other session, a QMTP one included, gets a permanent
// 5.7.10 of gw's own before anything is sent: the caller tries the next
// host, and where none can, the message bounces.
func StartRequireTLS(s Session, sender string, size int64, utf8 bool, dm dsn.Mail) (Delivery, error) {
	if rs, ok := s.(interface {
		startRequireTLS(string, int64, bool, dsn.Mail) (Delivery, error)
	}); ok {
		return rs.startRequireTLS(sender, size, utf8, dm)
	}
	return nil, requireTLSRefusal("", "the transport has no TLS")
}

// canRequireTLS is the session's part of StartRequireTLS.
func (s *smtpSession) canRequireTLS() error {
	st := s.state
	switch {
	case !st.On():
		return requireTLSRefusal(s.host, "the session is not in TLS")
	case !st.authenticated():
		why := "the server's certificate was not authenticated (level " + st.Level.String() + ")"
		if st.Why != "" {
			why += ": " + st.Why
		}
		return requireTLSRefusal(s.host, why)
	}
	if ok, _ := s.c.Extension("REQUIRETLS"); !ok {
		return &notOffered{requireTLSRefusal(s.host, "the server does not offer REQUIRETLS").(*Reply)}
	}
	return nil
}

// notOffered is the 5.7.10 of a session that would do for REQUIRETLS
// but for the server's not offering the extension.
type notOffered struct{ *Reply }

func (e *notOffered) Unwrap() error { return e.Reply }

// RequireTLSNotOffered reports whether err is StartRequireTLS's refusal
// of a session in authenticated TLS whose server does not offer
// REQUIRETLS: RFC 8689 5 would not have a bounce (null sender) dropped
// for that alone, and gw-send sends one over it without the parameter.
func RequireTLSNotOffered(err error) bool {
	var n *notOffered
	return errors.As(err, &n)
}

// authenticated reports whether the session's server was authenticated
// as RFC 8689 4.2.1 wants: its chain and name verified, or DANE, or a
// certificate verified for an MTA-STS policy.
func (t TLSState) authenticated() bool {
	return t.On() && t.NameChecked && (t.Auth == "verified" || t.Auth == "dane" || t.Auth == "mta-sts")
}

func requireTLSRefusal(host, why string) error {
	return &Reply{Code: 550, Enhanced: StatusRequireTLS, Own: true, Host: host,
		Text: StatusRequireTLS + " REQUIRETLS not possible: " + why}
}

// nameChecked reports whether the authentication in st covers the
// server's name: DANE's does (RFC 7672 decides when names count); a
// policy with names checked them; a verified chain at a level that named
// none is matched here to the MX host's name, which is what RFC 8689
// 4.2.1 asks of a REQUIRETLS hop. An address literal has no name.
func nameChecked(st TLSState, p *TLSPolicy, chain []*x509.Certificate, host string) bool {
	switch {
	case st.Auth == "dane":
		return true
	case st.Auth != "verified" && st.Auth != "mta-sts":
		return false
	case len(p.Names) > 0:
		return true
	case len(chain) == 0 || strings.HasPrefix(host, "["):
		return false
	}
	for _, n := range chain[0].DNSNames {
		if dane.MatchName(n, []string{host}) {
			return true
		}
	}
	return false
}
