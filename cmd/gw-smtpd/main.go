// Command gw-smtpd is gw's SMTP receiver: the gateway's whole before-queue
// policy, then each message to the queue injector. It listens itself
// (--listen) or serves one session on fds 0 and 1 under tcpserver. See
// gw-smtpd(8).
package main

import (
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/dns"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/metrics"
	"gw/lib/program"
	"gw/lib/smtpd"
	"gw/lib/tcpserver"
)

type config struct {
	tcpserver.Options
	checkpw, greylistDB, calloutCache  string
	ratesDB                            string
	dmarcReports                       string
	implicitTLS                        bool
	remoteHost, noRemoteHost, paranoid bool
	metrics                            string
	test                               sessionTest
}

func main() {
	var c config
	app := program.New("gw-smtpd", "SMTP receiver with the gateway's before-queue policy")
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"} // -h is tcpserver's
	app.Flags = append(append(listenFlags(&c.Options, 200), c.hostFlags()...), []cli.Flag{
		&cli.BoolFlag{Name: "tls", Usage: "implicit TLS from the first byte (port 465)", Destination: &c.implicitTLS},
		&cli.StringFlag{Name: "checkpassword", Usage: "offer AUTH after STARTTLS, verified by checkpassword `PROGRAM` (with arguments)", Destination: &c.checkpw},
		&cli.StringFlag{Name: "greylist", Usage: "greylist untrusted clients, triplets in the bbolt `FILE`", Destination: &c.greylistDB},
		&cli.StringFlag{Name: "rates", Usage: "keep rate counts and bans in the bbolt `FILE`", Destination: &c.ratesDB},
		&cli.StringFlag{Name: "callout-cache", Usage: "cache recipient callout answers in the bbolt `FILE`", Destination: &c.calloutCache},
		&cli.StringFlag{Name: "dmarc-reports", Usage: "record DMARC results for gw-dmarc's reports in the bbolt `FILE`", Destination: &c.dmarcReports},
		metrics.Flag(&c.metrics),
	}...)
	app.Flags = append(app.Flags, c.test.flags()...)
	app.Action = func(x *cli.Context) error {
		if c.test.on {
			return testSession(x, &c, &c.test, os.Stdin, os.Stdout)
		}
		if x.IsSet("client") || x.IsSet("client-host") || x.IsSet("env") || x.IsSet("instance") || x.IsSet("face") {
			return program.Fail(program.ExitPermanent, "usage: --client, --client-host, --env, --instance and --face go with --test-session")
		}
		return run(&c)
	}
	program.Run(app)
}

func run(c *config) error {
	log := logline.Stderr
	keep := &lasting{}
	if err := c.Trusted(); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	cfg, err := configure(c, keep)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	if c.implicitTLS && cfg.TLS == nil {
		return program.Fail(program.ExitPermanent, "--tls needs control/servercert.pem, and one that loads")
	}
	standalone, err := c.Standalone()
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	if !standalone && c.metrics != "" {
		return program.Fail(program.ExitPermanent, "usage: --metrics goes with --listen: under tcpserver a process lives one session")
	}
	// The injector is chosen here, once (handoff.Chooser); under
	// tcpserver a rule's QMAILQUEUE is already the process's.
	injectors := handoff.NewChooser(os.Getenv)
	if !standalone {
		cl := tcpserver.ClientFromEnv(os.LookupEnv)
		cl.Injector, cl.Space = injectors.Default(), injectors.DefaultSpace()
		smtpd.Serve(tcpserver.StdioConn(), cfg, cl)
		return nil
	}
	// Bound before tcpserver.Bind drops the privileges.
	if err := metrics.Start("gw-smtpd", c.metrics, log); err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	lns, err := tcpserver.Bind(c.Listen, c.User, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &smtpd.Listener{Cfg: cfg, ACL: c.ACL, LocalHost: c.LocalHost, Hosts: c.hosts(), MaxConns: c.Concurrency, MaxPerIP: c.PerIP, Injectors: injectors}
	if l.LocalHost == "" {
		l.LocalHost = cfg.Hostname
	}
	err = tcpserver.ServeAll(lns, func(ln net.Listener) error { return l.Serve(ln, 30*time.Second) },
		func() { reload(c, keep, l) }, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "accept: %v", err)
	}
	return nil
}

// reload reads the control files again for the sessions to come; on any
// error the configuration in force stays, as a half-read policy must
// never serve.
func reload(c *config, keep *lasting, l *smtpd.Listener) {
	err := c.Trusted()
	var cfg *smtpd.Config
	if err == nil {
		cfg, err = configure(c, keep)
	}
	if err == nil && c.implicitTLS && cfg.TLS == nil {
		err = os.ErrNotExist
	}
	if err != nil {
		logline.Stderr.Warning("reload", "result", "failed", "err", err)
		return
	}
	l.SetConfig(cfg)
	logline.Stderr.Info("reload", "result", "ok")
}

// hostFlags are tcpserver's -h, -H and -p, under tcpserver's letters so
// that a run script moving from tcpserver to --listen keeps its options.
func (c *config) hostFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "remote-host", Aliases: []string{"h"}, Value: true, Destination: &c.remoteHost,
			Usage: "look up each client's name (PTR) for TCPREMOTEHOST and the host rules (standalone)"},
		&cli.BoolFlag{Name: "no-remote-host", Aliases: []string{"H"}, Destination: &c.noRemoteHost,
			Usage: "look up no client names: TCPREMOTEHOST unset, host rules never match (standalone; wins over -h)"},
		&cli.BoolFlag{Name: "paranoid", Aliases: []string{"p"}, Destination: &c.paranoid,
			Usage: "keep a client's name only if it resolves back to the client's address (standalone)"},
	}
}

// hosts is the standalone listener's TCPREMOTEHOST lookup, through the
// resolver GW_DNS names (the one the RBL checks use), or nil with -H.
func (c *config) hosts() *tcpserver.HostLookup {
	if !c.remoteHost || c.noRemoteHost {
		return nil
	}
	return &tcpserver.HostLookup{Resolver: dns.FromEnv(), Paranoid: c.paranoid}
}
