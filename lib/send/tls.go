package send

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gw/lib/bounce"
	"gw/lib/dane"
	"gw/lib/deliver"
	"gw/lib/mtasts"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/tlspolicy"
	"gw/lib/tlsrequired"
	"gw/lib/tlsrpt"

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
	f := []any{"tls_version", st.Version, "tls_cipher", st.Cipher, "tls_auth", st.Auth, "tls_level", st.Level.String()}
	if st.STS != "" {
		f = append(f, "tls_sts", string(st.STS))
	}
	return f
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
	// sts is the domain's MTA-STS policy, for MX delivery at the
	// default level may or dane (an admin's own line wins).
	sts *mtasts.Policy
	// optional: the message says "TLS-Required: No" (RFC 8689 5) and
	// did not come with REQUIRETLS, which would overrule it (RFC 8689
	// 4.1). DANE (levels dane and dane-only) and MTA-STS, the policies
	// RFC 8689 names, are set aside: TLS is tried, and the clear taken
	// where it fails. The PKIX levels an admin wrote (encrypt, verify,
	// secure: a smarthost's or a partner's TLS) stay: they are the
	// sending site's own terms with that peer.
	optional bool
	// setAside: a policy was set aside for a host of this job.
	setAside bool
}

func (s *Sender) newTLSPolicies(j *job, cfg *Config) *tlsPolicies {
	var e *tlspolicy.Entry
	switch {
	case j.route.Proto != route.SMTP:
		// LMTP goes to a local delivery agent, never over TLS, and
		// QMTP has no STARTTLS: no policy, no DNSSEC or MTA-STS lookups
		e = &tlspolicy.Entry{Level: tlspolicy.None}
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
	tp := &tlsPolicies{s: s, j: j, cfg: cfg, entry: e}
	if e.Dest == "" && (e.Level == tlspolicy.May || e.Level == tlspolicy.Dane) && j.route.Relay == "" {
		tp.sts = s.mtaSTS(j, cfg)
	}
	return tp
}

// mtaSTS looks up j's domain's MTA-STS policy; a failure to fetch one
// that the TXT record announced is logged (and, testing or not, mail
// goes on as without a policy, RFC 8461 5).
func (s *Sender) mtaSTS(j *job, cfg *Config) *mtasts.Policy {
	mr, ok := s.res.(mtasts.Resolver)
	if !ok {
		return nil
	}
	f := &mtasts.Fetcher{DNS: mr, Port: mtasts.PortFromEnv(), Timeout: min(cfg.ConnectTimeout+10*time.Second, time.Minute),
		Dir: cfg.STSCache, Now: s.now}
	if cfg.TLSPolicy != nil {
		f.Roots = cfg.TLSPolicy.Roots
	}
	ctx, cancel := context.WithTimeout(j.ctx, f.Timeout)
	defer cancel()
	p, err := f.Lookup(ctx, j.domain)
	if err != nil {
		s.log.Warning("tls_failed", "qid", j.id, "host", "mta-sts."+j.domain, "stage", "mta-sts", "reason", err.Error())
		if rerr := cfg.TLSRPT.Record(tlsrpt.Result{Time: s.now().Unix(), PolicyType: tlsrpt.PolicySTS, PolicyDomain: j.domain,
			ResultType: tlsrpt.STSPolicyFetchError, Reason: err.Error()}); rerr != nil {
			s.log.Warning("tlsrpt", "qid", j.id, "err", rerr)
		}
	}
	if p == nil || p.Mode == mtasts.None {
		return nil
	}
	return p
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
	if tp.optional {
		return tp.optionalFor(ctx, h), nil
	}
	p := &deliver.TLSPolicy{Level: e.Level, Cert: e.Cert}
	if tp.cfg.TLSPolicy != nil {
		p.Roots = tp.cfg.TLSPolicy.Roots
	}
	switch e.Level {
	case tlspolicy.Verify, tlspolicy.Secure:
		p.Names = e.Names(tp.nexthop(), h.Name)
	case tlspolicy.Dane, tlspolicy.DaneOnly:
		if err := tp.dane(ctx, h, p); err != nil {
			return nil, tp.fail(h, "dane", err.Error())
		}
	}
	if tp.sts != nil && len(p.TLSA) == 0 && p.Level == tlspolicy.May {
		// MTA-STS where DANE did not apply (RFC 8461 2)
		p.STS, p.Names = tp.sts.Mode, []string{h.Name}
		if !tp.sts.Matches(h.Name) {
			reason := fmt.Sprintf("MX host %s is not among the MTA-STS policy's mx %s (mode %s)", h.Name, strings.Join(tp.sts.MX, ","), tp.sts.Mode)
			if tp.sts.Mode == mtasts.Enforce {
				return nil, tp.fail(h, "mta-sts", reason)
			}
			tp.s.tlsFailed(tp.j)(&deliver.TLSFailure{Host: h.String(), Stage: "mta-sts", Reason: reason})
		}
	}
	return p, nil
}

// recipientPolicy reports whether the destination's TLS policy holds
// one TLS-Required: No sets aside: DANE or MTA-STS.
func (tp *tlsPolicies) recipientPolicy() bool {
	l := tp.entry.Level
	return l == tlspolicy.Dane || l == tlspolicy.DaneOnly || tp.sts != nil
}

// optionalFor is the policy of a session with h for a message that says
// "TLS-Required: No": level may. It still asks what DANE and MTA-STS
// would have wanted of h, to log what it sets aside: an admin sees each
// message that went with less than the recipient published.
func (tp *tlsPolicies) optionalFor(ctx context.Context, h route.Host) *deliver.TLSPolicy {
	p := &deliver.TLSPolicy{Level: tlspolicy.May, Cert: tp.entry.Cert}
	if tp.cfg.TLSPolicy != nil {
		p.Roots = tp.cfg.TLSPolicy.Roots
	}
	var set []string
	if tp.entry.Level == tlspolicy.Dane || tp.entry.Level == tlspolicy.DaneOnly {
		dp := &deliver.TLSPolicy{Level: tp.entry.Level}
		switch err := tp.dane(ctx, h, dp); {
		case err != nil:
			set = append(set, "dane ("+err.Error()+")")
		case len(dp.TLSA) > 0:
			set = append(set, fmt.Sprintf("dane (%d usable TLSA records)", len(dp.TLSA)))
		case dp.Level == tlspolicy.Encrypt:
			set = append(set, "dane (TLSA records, none usable: TLS required)")
		}
	}
	if tp.sts != nil {
		why := "mx matches"
		if !tp.sts.Matches(h.Name) {
			why = "mx " + strings.Join(tp.sts.MX, ",") + " does not match"
		}
		set = append(set, fmt.Sprintf("mta-sts (mode %s, %s)", tp.sts.Mode, why))
	}
	if len(set) > 0 {
		tp.setAside = true
		tp.s.log.Warning("tls_policy_ignored", "qid", tp.j.id, "host", h.String(), "header", "TLS-Required: No",
			"policy", strings.Join(set, "; "), "level", "may")
	}
	return p
}

// fail logs a policy failure before any connection and returns it as
// the host's temporary failure.
func (tp *tlsPolicies) fail(h route.Host, stage, reason string) error {
	f := &deliver.TLSFailure{Host: h.String(), Stage: stage, Reason: reason}
	tp.s.tlsFailed(tp.j)(f)
	typ, result := tlsrpt.PolicyTLSA, tlsrpt.DNSSECInvalid
	if stage == "mta-sts" {
		typ, result = tlsrpt.PolicySTS, tlsrpt.ValidationFailure
	}
	tp.report(h, typ, false, result, reason)
	return &deliver.ConnError{Host: h.String(), Err: f, Enhanced: deliver.StatusBadCert}
}

// report records a session's result for TLS-RPT, for destinations with
// a policy (TLSA records, MTA-STS).
func (tp *tlsPolicies) report(h route.Host, typ string, ok bool, result, reason string) {
	r := tlsrpt.Result{Time: tp.s.now().Unix(), PolicyType: typ, PolicyDomain: tp.j.domain, MXHost: h.Name,
		Success: ok, ResultType: result, Reason: reason}
	if h.Addr.IsValid() {
		r.ReceivingIP = h.Addr.String()
	}
	if typ == tlsrpt.PolicySTS && tp.sts != nil {
		r.PolicyString = tp.sts.Lines()
	}
	if err := tp.cfg.TLSRPT.Record(r); err != nil {
		tp.s.log.Warning("tlsrpt", "qid", tp.j.id, "err", err)
	}
}

// reportSession records the result of a session (or of its failure)
// under the policy p it was made with.
func (tp *tlsPolicies) reportSession(h route.Host, p *deliver.TLSPolicy, st deliver.TLSState, err error) {
	typ := ""
	switch {
	case len(p.TLSA) > 0:
		typ = tlsrpt.PolicyTLSA
	case p.STS != "":
		typ = tlsrpt.PolicySTS
	default:
		return
	}
	var f *deliver.TLSFailure
	switch {
	case err == nil && (st.Auth == "dane" || st.Auth == "mta-sts") && (typ != tlsrpt.PolicySTS || tp.sts.Matches(h.Name)):
		tp.report(h, typ, true, "", "")
	case err == nil:
		tp.report(h, typ, false, tlsrpt.ValidationFailure, st.Why)
	case errors.As(err, &f):
		tp.report(h, typ, false, resultType(f, typ), f.Reason)
	}
}

// resultType names a TLS failure as RFC 8460 4.3 does.
func resultType(f *deliver.TLSFailure, typ string) string {
	switch {
	case f.Stage == "starttls":
		return tlsrpt.StartTLSNotSupported
	case f.Stage != "verify":
		return tlsrpt.ValidationFailure
	case strings.Contains(f.Reason, "expired"):
		return tlsrpt.CertExpired
	case strings.Contains(f.Reason, "match none") || strings.Contains(f.Reason, "names"):
		return tlsrpt.CertHostMismatch
	case typ == tlsrpt.PolicyTLSA:
		return tlsrpt.TLSAInvalid
	case strings.Contains(f.Reason, "unknown authority"):
		return tlsrpt.CertNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// reportTesting logs what an MTA-STS policy in testing mode would have
// refused on a session that went ahead.
func (s *Sender) reportTesting(j *job, h route.Host, st deliver.TLSState) {
	if st.STS == mtasts.Testing && st.Auth != "mta-sts" {
		reason := "testing mode: delivered although " + st.Why
		if !st.On() {
			reason = "testing mode: delivered in the clear"
		}
		s.tlsFailed(j)(&deliver.TLSFailure{Host: h.String(), Stage: "mta-sts", Reason: reason})
	}
}

// dane fills p's TLSA records from DNSSEC (RFC 7672 2.2): the MX RRset
// must be secure (for MX delivery), the host's address records and its
// TLSA RRset too.
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
		ok, err := res.AddrSecure(ctx, h.Name)
		if err != nil {
			return err
		}
		secureName = ok
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
	errDANEInsecure = &danePolicyError{"level dane-only, and the MX, the host's address or its TLSA records are not DNSSEC-signed"}
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

// tlsRequiredNo reports whether message id's header section says
// "TLS-Required: No" (RFC 8689 5). A message that cannot be read asks
// for nothing: its policy stays whole.
func (s *Sender) tlsRequiredNo(id queue.ID) bool {
	body, err := s.r.Body(id)
	if err != nil {
		return false
	}
	defer body.Close()
	h, err := bounce.ReadHeaders(body)
	return err == nil && tlsrequired.No(h)
}
