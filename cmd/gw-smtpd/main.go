// Command gw-smtpd is gw's SMTP receiver: the gateway's whole before-queue
// policy, then each message to the queue injector. It listens itself
// (--listen) or serves one session on fds 0 and 1 under tcpserver. See
// gw-smtpd(8).
package main

import (
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"gw/lib/handoff"
	"gw/lib/instdir"
	"gw/lib/listener"
	"gw/lib/logline"
	"gw/lib/metrics"
	"gw/lib/program"
	"gw/lib/runtimetune"
	"gw/lib/smtpd"
)

type config struct {
	listener.Options
	checkpw, greylistDB, calloutCache string
	ratesDB                           string
	dmarcReports                      string
	quarantine                        string
	implicitTLS                       bool
	metrics                           string
	test                              sessionTest
	getenv                            func(string) string // the environment, with the instance's injector
}

func main() {
	var c config
	app := program.New("gw-smtpd", "SMTP receiver with the gateway's before-queue policy")
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"} // -h is tcpserver's
	app.Flags = append(c.Options.Flags(200), []cli.Flag{
		&cli.BoolFlag{Name: "tls", Usage: "implicit TLS from the first byte (port 465)", Destination: &c.implicitTLS},
		&cli.StringFlag{Name: "checkpassword", Usage: "offer AUTH after STARTTLS, verified by checkpassword `PROGRAM` (with arguments)", Destination: &c.checkpw},
		&cli.StringFlag{Name: "greylist", Usage: "greylist untrusted clients, triplets in the bbolt `FILE`", Destination: &c.greylistDB},
		&cli.StringFlag{Name: "rates", Usage: "keep rate counts and bans in the bbolt `FILE`", Destination: &c.ratesDB},
		&cli.StringFlag{Name: "callout-cache", Usage: "cache recipient callout answers in the bbolt `FILE`", Destination: &c.calloutCache},
		&cli.StringFlag{Name: "dmarc-reports", Usage: "record DMARC results for gw-dmarc's reports in the bbolt `FILE`", Destination: &c.dmarcReports},
		&cli.StringFlag{Name: "quarantine", Usage: "hold what DMARC quarantines in `DIR`, gw-scan's quarantine (default: quarantine beside the control directory)", EnvVars: []string{"GW_QUARANTINE"}, Destination: &c.quarantine},
		metrics.Flag(&c.metrics),
	}...)
	app.Flags = append(app.Flags, c.test.flags()...)
	app.Action = func(x *cli.Context) error {
		if c.test.on {
			return testSession(x, &c, &c.test, os.Stdin, os.Stdout)
		}
		if x.IsSet("client") || x.IsSet("client-host") || x.IsSet("env") || x.IsSet("face") {
			return program.Fail(program.ExitPermanent, "usage: --client, --client-host, --env and --face go with --test-session")
		}
		c.getenv = os.Getenv
		if c.test.instance != "" {
			d, err := instdir.Choose(c.test.root, c.test.instance)
			if err == nil {
				c.getenv, err = c.UseInstance(x, d, "tcp.smtp", os.Getenv)
			}
			if err != nil {
				return program.Fail(program.ExitPermanent, "usage: %v", err)
			}
		}
		return run(&c)
	}
	program.Run(app)
}

func run(c *config) error {
	log := logline.Stderr
	if standalone, _ := c.Standalone(); standalone {
		// A listener lives long: see lib/runtimetune. Under tcpserver a
		// process lives one session, not worth an exec.
		runtimetune.Daemon(log)
	}
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
	if standalone, _ := c.Standalone(); !standalone && c.metrics != "" {
		return program.Fail(program.ExitPermanent, "usage: --metrics goes with --listen: under tcpserver a process lives one session")
	}
	l := &smtpd.Listener{Cfg: cfg}
	return listener.Run(&c.Options, listener.Program{
		Log:       log,
		Injectors: handoff.NewChooser(c.getenv), // chosen here, once
		Me:        cfg.Hostname,
		Session:   l.Session,
		Refuse:    l.Refuse,
		// The metrics port is bound before the privileges go.
		Bind:   func() error { return metrics.Start("gw-smtpd", c.metrics, log) },
		Reload: func() { reload(c, keep, l) },
	})
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
		err = errors.New("--tls needs control/servercert.pem, and one that loads")
	}
	if err != nil {
		logline.Stderr.Warning("reload", "result", "failed", "err", err)
		return
	}
	l.SetConfig(cfg)
	logline.Stderr.Info("reload", "result", "ok")
}
