package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gw/lib/authcheck"
	"gw/lib/control"
	"gw/lib/dns"
	"gw/lib/logline"
	"gw/lib/milter"
	"gw/lib/recipients"
	"gw/lib/relay"
	"gw/lib/smtpserver"
)

// Defaults of the control files, documented in gw-smtpd(8).
const (
	DefaultTimeout    = 1200 // timeoutsmtpd, seconds (qmail's)
	DefaultMaxRcpt    = 1000 // maxrcpt (Postfix's smtpd_recipient_limit)
	DefaultMaxErrors  = 10   // maxerrors
	DefaultMaxBadRcpt = 50   // maxbadrcpt
	DefaultMaxSession = 3600 // maxsessiontime, seconds
)

// Load reads the control files of dir into a Config. A file that exists
// but cannot be read is an error: the listener must not start (or serve)
// with a policy it did not fully read.
func Load(dir control.Dir, log *logline.Logger) (*Config, error) {
	c := &Config{Log: log}
	me, ok, err := dir.Me()
	if err != nil {
		return nil, err
	}
	if !ok || me == "" {
		return nil, errors.New("control/me is missing: the host needs a name")
	}
	c.Hostname = me
	if c.Greeting, err = dir.LineOrMe("smtpgreeting", me); err != nil {
		return nil, err
	}
	if c.LocalIPHost, err = dir.LineOrMe("localiphost", me); err != nil {
		return nil, err
	}
	if c.Databytes, err = dir.Int("databytes", 0); err != nil {
		return nil, err
	}
	t, err := dir.Int("timeoutsmtpd", DefaultTimeout)
	if err != nil {
		return nil, err
	}
	c.Timeout = time.Duration(max(t, 1)) * time.Second
	st, err := dir.Int("maxsessiontime", DefaultMaxSession)
	if err != nil {
		return nil, err
	}
	c.MaxSession = time.Duration(max(st, 0)) * time.Second
	g, err := dir.Int("greetdelay", 0)
	if err != nil {
		return nil, err
	}
	c.GreetDelay = time.Duration(min(max(g, 0), 300)) * time.Second
	ints := []struct {
		name string
		def  int64
		to   *int
	}{
		{"maxrcpt", DefaultMaxRcpt, &c.MaxRcpt},
		{"maxerrors", DefaultMaxErrors, &c.MaxErrors},
		{"maxbadrcpt", DefaultMaxBadRcpt, &c.MaxBadRcpt},
		{"maxjunk", smtpserver.DefaultMaxJunk, &c.MaxJunk},
		{"mindatarate", smtpserver.DefaultMinDataRate, &c.MinDataRate},
	}
	for _, i := range ints {
		v, err := dir.Int(i.name, i.def)
		if err != nil {
			return nil, err
		}
		*i.to = int(min(max(v, 0), 1<<30))
	}
	maxAuth, err := dir.Int("maxauthfail", DefaultMaxAuthFail)
	if err != nil {
		return nil, err
	}
	window, err := dir.Int("authfailwindow", DefaultAuthFailWindow)
	if err != nil {
		return nil, err
	}
	c.AuthLimit = &AuthLimiter{Max: int(min(max(maxAuth, 0), 1<<20)), Window: time.Duration(max(window, 1)) * time.Second}
	if c.Domains, err = relay.Load(dir); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		to   **Patterns
	}{{"badmailfrom", &c.BadMailFrom}, {"badrcptto", &c.BadRcptTo}} {
		l, _, err := dir.List(p.name)
		if err != nil {
			return nil, err
		}
		*p.to = NewPatterns(l)
	}
	rdir := filepath.Join(string(dir), "recipients")
	if st, err := os.Stat(rdir); err == nil && st.IsDir() {
		c.Recipients = recipients.Open(rdir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control/recipients: %w", err)
	}
	if c.Milters, err = milter.Load(string(dir)); err != nil {
		return nil, err
	}
	auth, err := authcheck.Load(string(dir))
	if err != nil {
		return nil, err
	}
	// Always a checker: a rule's DMARCPOLICY or SPFPOLICY turns checks on
	// for its clients with no control file; a transaction with nothing to
	// check costs a field read (authcheck.Checker.Needed).
	c.MsgAuth = authcheck.New(auth, dns.FromEnv())
	cert := filepath.Join(string(dir), "servercert.pem")
	if _, err := os.Stat(cert); err == nil {
		// A certificate that does not load turns STARTTLS off, loudly:
		// refusing to start would take the whole listener down, and mail
		// with it, over what only the TLS-willing clients need.
		if c.TLS, err = TLSConfig(cert); err != nil {
			log.Alert("tls_off", "reason", "certificate does not load", "err", err)
		}
	}
	return c, nil
}

// TLSConfig loads a PEM file holding the certificate chain and its key
// (qmail's control/servercert.pem). Session tickets are off: with them,
// Microsoft's senders failed against Go servers (golang/go#70232).
func TLSConfig(pem string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(pem, pem)
	if err != nil {
		return nil, fmt.Errorf("control/servercert.pem: %w", err)
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
	}, nil
}
