package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"gw/lib/callout"
	"gw/lib/control"
	"gw/lib/dns"
	"gw/lib/greylist"
	"gw/lib/handoff"
	"gw/lib/instance"
	"gw/lib/instdir"
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/ratelimit"
	"gw/lib/rbl"
	"gw/lib/scan"
	"gw/lib/sessiontest"
	"gw/lib/smtpd"
	"gw/lib/state"
)

// sessionTest holds the session test's options (--test-session).
type sessionTest struct {
	on                   bool
	client, clientHost   string
	env                  []string
	root, instance, face string
	controlSet, aclSet   bool
	greylistSet          bool
	local                netip.AddrPort
	scanned              bool                // the face's mail goes through gw-scan
	getenv               func(string) string // the face's service environment
}

func (t *sessionTest) flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "test-session", Usage: "read one SMTP session from stdin for --client, explain each decision, queue nothing", Destination: &t.on},
		&cli.StringFlag{Name: "client", Usage: "the session test's client address `IP`", Destination: &t.client},
		&cli.StringFlag{Name: "client-host", Usage: "the session test's client name `NAME` (TCPREMOTEHOST; default: unset)", Destination: &t.clientHost},
		&cli.StringSliceFlag{Name: "env", Usage: "set `NAME=VALUE` in the session test's environment after the ACL rule's (repeatable)",
			Action: func(_ *cli.Context, v []string) error { t.env = v; return nil }},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: instdir.DefaultRoot, Destination: &t.root},
		&cli.StringFlag{Name: "instance", Usage: "serve the instance `NAME` under the root: its control files, ACL and injector socket; with --test-session, its face's settings and scan", Destination: &t.instance},
		&cli.StringFlag{Name: "face", Usage: "test a session on the instance's SMTP listener `FACE` (default: its first)", Destination: &t.face},
	}
}

// testSession runs the session test: stdin is the client's script, stdout
// the replies and the explanations (sessiontest.Prefix), stderr the log
// lines the listener would write.
func testSession(x *cli.Context, c *config, t *sessionTest, stdin io.Reader, stdout io.Writer) error {
	t.controlSet, t.aclSet, t.greylistSet = x.IsSet("control-dir"), x.IsSet("acl"), x.IsSet("greylist")
	if len(c.Listen) > 0 || c.User != "" || c.metrics != "" {
		return program.Fail(program.ExitPermanent, "usage: --test-session reads stdin: no --listen, --user or --metrics")
	}
	ip, err := netip.ParseAddr(t.client)
	if err != nil {
		return program.Fail(program.ExitPermanent, "usage: --test-session needs --client IP: %q is not an address", t.client)
	}
	for _, item := range t.env {
		if k, _, ok := strings.Cut(item, "="); !ok || k == "" {
			return program.Fail(program.ExitPermanent, "usage: --env %q: not NAME=VALUE", item)
		}
	}
	if err := t.resolve(c); err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	var mu sync.Mutex
	ex := sessiontest.NewExplainer(stdout, &mu)
	log := logline.New(os.Stderr)
	ex.Tap(log)
	ex.Line("session test: nothing is queued, held or counted; the log lines go to stderr")
	if err := c.Trusted(); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	cfg, err := t.config(c, log, ex)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	cl := sessiontest.Client{IP: ip, Host: t.clientHost, Local: t.local, LocalHost: c.LocalHost, ACL: c.ACL, Env: t.env}
	if cl.LocalHost == "" {
		cl.LocalHost = cfg.Hostname
	}
	env, denied, err := cl.Environment(ex.Line)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	if denied {
		return nil
	}
	for _, m := range sessiontest.Meaning(env) {
		ex.Line("env: " + m)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	client := smtpd.ClientFromEnv(lookup)
	if client.Rates.Any() {
		ex.Line("rates: counted within this session alone: the counts the listener keeps (--rates, control/statebackend) are neither read nor written")
	}
	client.Injector = t.injector(c, lookup, log, ex)
	if client.HasDatabytes {
		ex.Line(fmt.Sprintf("size: at most %d bytes a message (DATABYTES)", client.Databytes))
	} else if cfg.Databytes > 0 {
		ex.Line(fmt.Sprintf("size: at most %d bytes a message (control/databytes)", cfg.Databytes))
	}
	smtpd.Serve(sessiontest.NewConn(stdin, stdout, &mu), cfg, client)
	return nil
}

// resolve finds the control directory, the rules database and the
// listener's address: the options given, else the instance's face as its
// service runs it (gw-instance writes that service from the same
// Daemons), else the defaults.
func (t *sessionTest) resolve(c *config) error {
	t.local = netip.MustParseAddrPort("127.0.0.1:25")
	t.getenv = os.Getenv
	t.scanned = filepath.Base(os.Getenv("QMAILQUEUE")) == "gw-scan"
	if t.instance == "" {
		if t.face != "" {
			return fmt.Errorf("usage: --face goes with --instance")
		}
		return nil
	}
	in, err := instance.Open(t.root, t.instance)
	if err != nil {
		return err
	}
	s, err := in.Settings()
	if err != nil {
		return err
	}
	var d *instance.Daemon
	for _, l := range s.Listeners {
		if l.Proto == "smtp" && (t.face == "" || t.face == l.Face) {
			for _, dd := range in.Daemons(s) {
				if dd.Name == l.Face {
					d = &dd
				}
			}
			if ap, err := netip.ParseAddrPort(l.Addr); err == nil {
				t.local = ap
			}
			break
		}
	}
	if d == nil {
		if t.face != "" {
			return fmt.Errorf("instance %s has no SMTP listener %q", t.instance, t.face)
		}
		return fmt.Errorf("instance %s has no SMTP listener", t.instance)
	}
	if !t.controlSet {
		c.ControlDir = in.Control()
	}
	if v := argValue(d.Argv, "acl"); v != "" && !t.aclSet {
		c.ACL = v
	}
	if v := argValue(d.Argv, "greylist"); v != "" && !t.greylistSet {
		c.greylistDB = absUnder(in.Dir(), v) // the run script starts in the instance's directory
	}
	env := d.Environment(s) // what the run script's listener gets
	t.getenv = func(k string) string { return env[k] }
	t.scanned = filepath.Base(env["QMAILQUEUE"]) == "gw-scan"
	return nil
}

// argValue returns the value of --name in a daemon's argv.
func argValue(argv []string, name string) string {
	for i, a := range argv {
		if a == "--"+name && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func absUnder(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// config reads the control files as the listener does, with the state
// it would write left alone: rate counts kept for this session only,
// callouts asked without their cache, the greylist only read, no DMARC
// report records, nothing held in the quarantine, no AUTH failures
// counted across sessions.
func (t *sessionTest) config(c *config, log *logline.Logger, ex *sessiontest.Explainer) (*smtpd.Config, error) {
	dir := control.Dir(c.ControlDir)
	cfg, err := smtpd.Load(dir, log)
	if err != nil {
		return nil, err
	}
	cfg.Explain = ex.Line
	cfg.AuthLimit = nil
	ex.Line("control: " + c.ControlDir)
	if cfg.TLS != nil {
		cfg.TLS = nil
		ex.Line("tls: STARTTLS not offered: a script cannot negotiate TLS")
	}
	if cfg.GreetDelay > 0 {
		ex.Line(fmt.Sprintf("greetdelay: %s not waited: a script always talks first", cfg.GreetDelay))
		cfg.GreetDelay = 0
	}
	zones, _, err := dir.List("rblzones")
	if err != nil {
		return nil, err
	}
	if z := rbl.Parse(zones); len(z) > 0 {
		cfg.RBL = &rbl.Checker{Zones: z, Resolver: dns.FromEnv()}
	}
	cfg.Limits = &ratelimit.Limiter{Local: &state.Memory{}, Log: log}
	v, err := callout.Load(dir, "", false)
	if err != nil {
		return nil, err
	}
	if v != nil {
		cfg.Verifier = v
		ex.Line("callout: recipients of control/callouts are asked live; answers are not cached")
	}
	shared, _, err := dir.Line("statebackend")
	if err != nil {
		return nil, err
	}
	switch {
	case c.greylistDB != "" && shared != "":
		// The shared state checks and records a triplet in one step:
		// there is no asking it without writing.
		ex.Line("greylist: kept in the shared state (control/statebackend): not consulted; a new triplet would be deferred")
	case c.greylistDB != "":
		g, err := greylist.Load(dir, c.greylistDB)
		if err != nil {
			return nil, err
		}
		cfg.Greylist = &sessiontest.Greylist{List: g, Explain: ex.Line}
	}
	if cfg.MsgAuth != nil {
		cfg.MsgAuth.Reports = nil
		// named so that DMARC's hold is told as the listener would do
		// it; a session test holds nothing there
		cfg.Quarantine = c.quarantineDir()
	}
	return cfg, nil
}

// injector is the session's stand-in for the injector the client would
// get (its rule's QMAILQUEUE or GW_QUEUED, else the service's): it names
// that one, and judges with gw-scan's engines when it is gw-scan.
func (t *sessionTest) injector(c *config, rule func(string) (string, bool), log *logline.Logger, ex *sessiontest.Explainer) handoff.Injector {
	real := handoff.NewChooser(t.getenv).For(rule)
	scanned := t.scanned
	switch i := real.(type) {
	case *handoff.Exec:
		ex.Line("injector: " + i.Path + " (not started)")
		scanned = filepath.Base(i.Path) == "gw-scan"
	case *handoff.Pool:
		ex.Line("injector: gw-queued's socket (not connected)")
		scanned = false
	}
	inj := &sessiontest.Injector{Explain: ex.Line}
	if !scanned {
		return inj
	}
	// gw-scan reads the control directory its environment names, as
	// the face's service gives it; else the listener's.
	scanDir := t.getenv("GW_CONTROL_DIR")
	if scanDir == "" {
		scanDir = c.ControlDir
	}
	s, err := scan.Load(control.Dir(scanDir), log)
	if err != nil {
		// gw-scan would refuse every message so (qq.ConfigError).
		ex.Line(fmt.Sprintf("scan: gw-scan cannot read its control files (%v): every message would be deferred", err))
		inj.Broken = err
		return inj
	}
	ex.Line("scan: " + engines(s) + " (control: " + scanDir + ")")
	inj.Scan = &scan.Wrapper{Scanner: s}
	return inj
}

// engines names the scanner's engines.
func engines(s *scan.Scanner) string {
	var e []string
	if s.Clamd != nil {
		e = append(e, "clamd")
	}
	if s.Spamd != nil {
		e = append(e, "spamd")
	}
	if s.Rspamd != nil {
		e = append(e, "rspamd")
	}
	e = append(e, "MIME rules")
	return "gw-scan checks each message with " + strings.Join(e, ", ")
}
