package deliver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"gw/lib/dane"
	"gw/lib/mtasts"
	"gw/lib/tlspolicy"
)

// TLSPolicy is what one server's session must get, as gw-send worked it
// out from control/tlspolicy and DNS for that server.
type TLSPolicy struct {
	Level tlspolicy.Level
	// Names are what the certificate must carry at verify and secure,
	// and with DANE-TA records (tlspolicy.Entry.Names).
	Names []string
	Roots *x509.CertPool   // nil: the system's
	Cert  *tls.Certificate // the client certificate, if any
	// TLSA are the usable, DNSSEC-validated TLSA records of the server:
	// when there are some, the session is authenticated by them and
	// by nothing else.
	TLSA []dane.Record
	// STS is the destination's MTA-STS mode (RFC 8461), "" for none:
	// enforce requires a certificate verified for the server's name
	// (Names); testing checks it and reports, as may does.
	STS mtasts.Mode
}

// TLSState is what a session got: shown on every delivery's log line
// and in its temporary errors.
type TLSState struct {
	Version string // "TLSv1.3"; "" in the clear
	Cipher  string
	// Auth is how the server was authenticated: none, verified (its
	// chain and names, PKIX), dane, or mta-sts (verified for a policy).
	Auth  string
	Level tlspolicy.Level
	// Why is, when Auth is none but TLS is on, why the certificate
	// did not verify.
	Why string
	STS mtasts.Mode // the MTA-STS mode that applied, if any
	// NameChecked: the certificate was matched to the server's name (by
	// the policy's names, by DANE, or, at levels that name none, to the
	// MX host's name), as REQUIRETLS wants (requiretls.go).
	NameChecked bool
}

// On reports whether the session is encrypted.
func (t TLSState) On() bool { return t.Version != "" }

func (t TLSState) String() string {
	if !t.On() {
		return "in the clear, level " + t.Level.String()
	}
	return fmt.Sprintf("%s %s, %s, level %s", t.Version, t.Cipher, t.Auth, t.Level)
}

// TLSStateOf is the TLS state of any session (a QMTP one is in the clear).
func TLSStateOf(s Session) TLSState {
	if ts, ok := s.(interface{ TLSState() TLSState }); ok {
		return ts.TLSState()
	}
	return TLSState{}
}

// policy is the session's policy: the configured one, else may (none
// with NoTLS), as before there were policies.
func (c *Config) policy() *TLSPolicy {
	if c.Policy != nil {
		return c.Policy
	}
	if c.NoTLS {
		return &TLSPolicy{Level: tlspolicy.None}
	}
	return &TLSPolicy{Level: tlspolicy.May}
}

// required reports whether the session must be encrypted: the level
// says so, or DNSSEC-signed TLSA records do.
func (p *TLSPolicy) required() bool {
	return p.Level.Required() || len(p.TLSA) > 0 || p.STS == mtasts.Enforce
}

// Statuses of TLS policy failures (RFC 3463): the security the policy
// wants is not offered, or the certificate fails it. Both are
// temporary: the mail waits for the server to be fixed, never going in
// the clear, as with Postfix.
const (
	StatusNoTLS   = "4.7.4"
	StatusBadCert = "4.7.5"
)

// authenticate decides how the server of state cs is authenticated, and
// fails the session where the policy wants more than that.
func (p *TLSPolicy) authenticate(cs tls.ConnectionState, now time.Time) (TLSState, error) {
	st := TLSState{Version: tlsVersion(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite), Auth: "none", Level: p.Level}
	if len(p.TLSA) > 0 {
		r, err := dane.Verify(p.TLSA, cs.PeerCertificates, p.Names, now)
		if err != nil {
			// The DNS, signed, says which certificate is the server's:
			// another is someone in the path, at every level.
			return st, fmt.Errorf("DANE: %w", err)
		}
		st.Auth = "dane"
		st.Why = "TLSA " + r.String()
		return st, nil
	}
	if p.Level == tlspolicy.DaneOnly {
		return st, errors.New("level dane-only, and the server has no usable DNSSEC-signed TLSA record")
	}
	if p.STS != "" {
		// DANE won above where it applies (RFC 8461 2).
		st.STS = p.STS
		if err := verifyPKIX(cs.PeerCertificates, p.Roots, p.Names, now); err != nil {
			st.Why = err.Error()
			if p.STS == mtasts.Enforce {
				return st, fmt.Errorf("MTA-STS enforce: %w", err)
			}
			return st, nil // testing: reported by gw-send, delivered
		}
		st.Auth = "mta-sts"
		return st, nil
	}
	if err := verifyPKIX(cs.PeerCertificates, p.Roots, p.Names, now); err != nil {
		st.Why = err.Error()
		if p.Level == tlspolicy.Verify || p.Level == tlspolicy.Secure {
			return st, fmt.Errorf("level %s: %w", p.Level, err)
		}
		return st, nil
	}
	st.Auth = "verified"
	return st, nil
}

// verifyPKIX checks a chain against roots and the certificate's names
// against names (none given: no name check, as at may and encrypt where
// it is only reported).
func verifyPKIX(chain []*x509.Certificate, roots *x509.CertPool, names []string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
		return fmt.Errorf("certificate not verified: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	for _, n := range chain[0].DNSNames {
		if dane.MatchName(n, names) {
			return nil
		}
	}
	return fmt.Errorf("certificate names %s match none of %s", strings.Join(chain[0].DNSNames, ","), strings.Join(names, ","))
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1.0"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}
