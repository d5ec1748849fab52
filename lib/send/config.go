package send

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"gw/lib/control"
	"gw/lib/deliver"
	"gw/lib/ipme"
	"gw/lib/route"
	"gw/lib/tlspolicy"
	"gw/lib/tlsrpt"
)

// Config is what gw-send reads from control files, at start and on SIGHUP.
// gw-send.8 tabulates them; keep the two together.
type Config struct {
	Me             string
	Helo           string        // helohost, else me
	Routes         route.Routes  // lmtproutes, qmtproutes, smtproutes
	Overall        int           // concurrencyremote (20)
	PerDest        int           // concurrencydest (10)
	PerQMTP        int           // concurrencyqmtp (64): messages in flight to one QMTP destination
	Lifetime       time.Duration // queuelifetime (604800 s)
	Timeout        time.Duration // timeoutremote (1200 s)
	ConnectTimeout time.Duration // timeoutconnect (60 s)
	SMTPPort       int           // smtpport (25)
	BounceFrom     string        // bouncefrom@bouncehost
	DoubleBounceTo string        // doublebounceto@doublebouncehost
	BounceQueue    string        // bouncequeue: the queue bounces go to ("" = this one)
	DNSServer      string        // dnsserver: host:port ("" = GW_DNS or the system's)
	BackoffMin     time.Duration // backoffmin (60 s)
	BackoffMax     time.Duration // backoffmax (3600 s)
	TLS            bool          // tlsremote (1): STARTTLS when offered
	// TLSPolicy is tlspolicy, tlslevel (may; none when tlsremote is
	// 0) and tlscafile; nil (in tests) is may or none by TLS.
	TLSPolicy *tlspolicy.Policy
	// DANETrusted are the DNS servers besides loopback whose AD bit is
	// believed (danetrusted).
	DANETrusted []netip.Addr
	// STSCache is where MTA-STS policies are cached: the instance's
	// state/send/mta-sts, beside the control directory.
	STSCache string
	// TLSRPT records TLS-RPT results in state/send/tlsrpt (gw-tlsrpt reports).
	TLSRPT       *tlsrpt.Recorder
	DelayWarning time.Duration // delaywarning (0 = none): warn the sender of mail deferred this long
	// Self is the gateway itself (me, listeners, moreipme, notipme and
	// the host's addresses), never a destination for MX delivery.
	Self *ipme.Me
}

// MaxConcurrency caps concurrencyremote, as qmail's conf-spawn does.
const MaxConcurrency = 1000

// ReadConfig reads the control files of dir.
func ReadConfig(dir string) (*Config, error) {
	d := control.Dir(dir)
	me, ok, err := d.Me()
	if err != nil {
		return nil, err
	}
	if !ok || me == "" {
		return nil, fmt.Errorf("%s: control/me is missing", dir)
	}
	c := &Config{Me: me}
	if c.Helo, err = d.LineOrMe("helohost", me); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name  string
		proto route.Proto
	}{{"lmtproutes", route.LMTP}, {"qmtproutes", route.QMTP}, {"smtproutes", route.SMTP}} {
		lines, _, err := d.List(f.name)
		if err != nil {
			return nil, err
		}
		t, err := route.Parse(f.proto, lines)
		if err != nil {
			return nil, fmt.Errorf("control/%s: %w", f.name, err)
		}
		c.Routes = append(c.Routes, t)
	}
	ints := []struct {
		name string
		def  int64
		min  int64
		max  int64
		dst  *int
	}{
		{"concurrencyremote", 20, 0, MaxConcurrency, &c.Overall},
		{"concurrencydest", 10, 1, MaxConcurrency, &c.PerDest},
		{"concurrencyqmtp", deliver.QMTPInFlight, 1, MaxConcurrency, &c.PerQMTP},
		{"smtpport", 25, 1, 65535, &c.SMTPPort},
	}
	for _, f := range ints {
		v, err := d.Int(f.name, f.def)
		if err != nil {
			return nil, err
		}
		*f.dst = int(min(max(v, f.min), f.max))
	}
	durs := []struct {
		name string
		def  int64
		dst  *time.Duration
	}{
		{"queuelifetime", 604800, &c.Lifetime},
		{"timeoutremote", 1200, &c.Timeout},
		{"timeoutconnect", 60, &c.ConnectTimeout},
		{"backoffmin", 60, &c.BackoffMin},
		{"backoffmax", 3600, &c.BackoffMax},
	}
	for _, f := range durs {
		v, err := d.Int(f.name, f.def)
		if err != nil {
			return nil, err
		}
		*f.dst = time.Duration(max(v, 1)) * time.Second
	}
	warn, err := d.Int("delaywarning", 0)
	if err != nil {
		return nil, err
	}
	c.DelayWarning = time.Duration(max(warn, 0)) * time.Second
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	tlsOn, err := d.Int("tlsremote", 1)
	if err != nil {
		return nil, err
	}
	c.TLS = tlsOn != 0
	if c.TLSPolicy, err = tlspolicy.Load(dir, c.TLS); err != nil {
		return nil, err
	}
	c.STSCache = filepath.Join(StateDir(dir), "mta-sts")
	c.TLSRPT = &tlsrpt.Recorder{Dir: filepath.Join(StateDir(dir), "tlsrpt")}
	trusted, _, err := d.List("danetrusted")
	if err != nil {
		return nil, err
	}
	for _, t := range trusted {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return nil, fmt.Errorf("control/danetrusted: %w", err)
		}
		c.DANETrusted = append(c.DANETrusted, a.Unmap())
	}
	from, _, err := d.Line("bouncefrom")
	if err != nil {
		return nil, err
	}
	if from == "" {
		from = "MAILER-DAEMON"
	}
	host, err := d.LineOrMe("bouncehost", "bouncehost")
	if err != nil {
		return nil, err
	}
	c.BounceFrom = from + "@" + host
	to, _, err := d.Line("doublebounceto")
	if err != nil {
		return nil, err
	}
	if to == "" {
		to = "postmaster"
	}
	dhost, err := d.LineOrMe("doublebouncehost", "doublebouncehost")
	if err != nil {
		return nil, err
	}
	c.DoubleBounceTo = to + "@" + dhost
	if c.BounceQueue, _, err = d.Line("bouncequeue"); err != nil {
		return nil, err
	}
	if c.BounceQueue != "" && !filepath.IsAbs(c.BounceQueue) {
		c.BounceQueue = filepath.Join(dir, "..", c.BounceQueue)
	}
	if c.DNSServer, _, err = d.Line("dnsserver"); err != nil {
		return nil, err
	}
	if c.Self, err = ipme.Load(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// StateDir is gw-send's own directory of the instance whose control
// directory is controlDir: state/send, beside control/. What is in it
// decides how mail leaves (an MTA-STS policy of mode none ends
// enforcement for its domain), so it is the queue user's alone, below
// directories only root writes (gw-instance(8), Layout).
func StateDir(controlDir string) string {
	return filepath.Join(controlDir, "..", "state", "send")
}
