package send

import (
	"context"
	"errors"
	"net/netip"

	"gw/lib/dane"
	"gw/lib/deliver"
	"gw/lib/route"
	"gw/lib/tlspolicy"

	mdns "github.com/miekg/dns"
)

// tlsFailed logs each TLS failure of j's sessions: opportunistic TLS
// falls back to the clear by itself, and the log is where an admin sees
// that it did, and why (a broken server, or someone in the path); a
// policy that requires TLS defers the mail, and the log says why.
func (s *Sender) tlsFailed(j *job) func(*deliver.TLSFailure) {
	return func(f *deliver.TLSFailure) {
		s.log.Warning("tls_failed", "qid", j.id, "host", f.Host, "stage", f.Stage, "reason", f.Reason)
	}
}

// tlsFields are a delivery's TLS on its log line: version, cipher, how
// the server was authenticated, and the policy's level.
func tlsFields(st deliver.TLSState) []any {
	if !st.On() {
		return []any{"tls_level", st.Level.String()}
	}
	return []any{"tls_version", st.Version, "tls_cipher", st.Cipher, "tls_auth", st.Auth, "tls_level", st.Level.String()}
}

// tlsPolicies works out, for one job, what TLS each of its servers must
// get: the control/tlspolicy entry of its destination, and for the dane
// levels what DNSSEC says.
type tlsPolicies struct {
	s     *Sender
	j     *job
	cfg   *Config
	entry *tlspolicy.Entry
	// mxSecure is the DNSSEC status of the domain's MX RRset, asked
	// once a job, and only at the dane levels.
	mxAsked  bool
	mxSecure bool
	mxErr    error
}

func (s *Sender) newTLSPolicies(j *job, cfg *Config) *tlsPolicies {
	var e *tlspolicy.Entry
	switch {
	case cfg.TLSPolicy != nil:
		port := j.route.Port
		if port == 0 {
			port = cfg.SMTPPort
		}
		e = cfg.TLSPolicy.Lookup(j.domain, j.route.Relay, port)
	case cfg.TLS:
		e = &tlspolicy.Entry{Level: tlspolicy.May}
	default:
		e = &tlspolicy.Entry{Level: tlspolicy.None}
	}
	return &tlsPolicies{s: s, j: j, cfg: cfg, entry: e}
}

// nexthop is the destination domain, or the relay of an artificial
// route: what secure's names and DANE-TA's are checked against.
func (tp *tlsPolicies) nexthop() string {
	if tp.j.route.Relay != "" {
		return tp.j.route.Relay
	}
	return tp.j.domain
}

// forHost is the policy of a session with h. An error (a DNSSEC lookup
// that failed, a dane-only server without TLSA records) means the host
// is not to be tried: the mail is deferred, never sent with less.
func (tp *tlsPolicies) forHost(ctx context.Context, h route.Host) (*deliver.TLSPolicy, error) {
	e := tp.entry
	p := &deliver.TLSPolicy{Level: e.Level, Cert: e.Cert}
	if tp.cfg.TLSPolicy != nil {
		p.Roots = tp.cfg.TLSPolicy.Roots
	}
	switch e.Level {
	case tlspolicy.Verify, tlspolicy.Secure:
		p.Names = e.Names(tp.nexthop(), h.Name)
	case tlspolicy.Dane, tlspolicy.DaneOnly:
		if err := tp.dane(ctx, h, p); err != nil {
			f := &deliver.TLSFailure{Host: h.String(), Stage: "dane", Reason: err.Error()}
			tp.s.tlsFailed(tp.j)(f)
			return nil, &deliver.ConnError{Host: h.String(), Err: f, Enhanced: deliver.StatusBadCert}
		}
	}
	return p, nil
}

// dane fills p's TLSA records from DNSSEC (RFC 7672 2.2): the MX RRset
// must be secure (for MX delivery) and the TLSA RRset of the host too.
// Secure usable records: the session is authenticated by them. Secure
// records none of which is usable: TLS without authentication, never
// the clear (encrypt). None, or insecure: dane is may, dane-only fails.
func (tp *tlsPolicies) dane(ctx context.Context, h route.Host, p *deliver.TLSPolicy) error {
	res := tp.s.daneResolver(tp.cfg)
	if tp.j.route.Relay == "" {
		if !tp.mxAsked {
			tp.mxAsked = true
			tp.mxSecure, tp.mxErr = res.MXSecure(ctx, tp.j.domain)
		}
		if tp.mxErr != nil {
			return tp.mxErr
		}
	}
	secureName := tp.j.route.Relay != "" || tp.mxSecure
	if _, err := netip.ParseAddr(h.Name); err == nil || h.Name == "" {
		secureName = false // an address has no TLSA records
	}
	if secureName {
		a, err := res.TLSA(ctx, h.Name, h.Port)
		if err != nil {
			return err
		}
		if usable := dane.Usable(a.Records); len(usable) > 0 {
			// RFC 7672 3.2.3: DANE-TA names are the TLSA base
			// domain and the next hop.
			p.TLSA, p.Names = usable, []string{h.Name, tp.nexthop()}
			return nil
		}
		if len(a.Records) > 0 {
			p.Level = tlspolicy.Encrypt
			return nil
		}
	}
	if p.Level == tlspolicy.DaneOnly {
		if !secureName {
			return errDANEInsecure
		}
		return errDANENone
	}
	p.Level = tlspolicy.May
	return nil
}

var (
	errDANEInsecure = &danePolicyError{"level dane-only, and the MX or the host's TLSA records are not DNSSEC-signed"}
	errDANENone     = &danePolicyError{"level dane-only, and the host publishes no TLSA record"}
)

type danePolicyError struct{ msg string }

func (e *danePolicyError) Error() string   { return e.msg }
func (e *danePolicyError) Temporary() bool { return true }

// daneResolver asks the instance's DNS server, believing its AD bit if it
// is on loopback or named in control/danetrusted.
func (s *Sender) daneResolver(cfg *Config) *dane.Resolver {
	r := s.res
	ex, ok := r.(dane.Exchanger)
	if !ok {
		return &dane.Resolver{DNS: noExchange{}}
	}
	return &dane.Resolver{DNS: ex, Trusted: cfg.DANETrusted}
}

// noExchange stands for a resolver that cannot send raw queries: no
// answer is secure, and a dane level defers.
type noExchange struct{}

func (noExchange) Exchange(context.Context, *mdns.Msg) (*mdns.Msg, error) {
	return nil, errors.New("no resolver for DNSSEC queries")
}
func (noExchange) Servers() []string { return nil }
