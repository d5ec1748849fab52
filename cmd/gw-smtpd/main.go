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

	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/smtpd"
	"gw/lib/tcpserver"
)

type config struct {
	controlDir, acl, localHost, user, checkpw, greylistDB, calloutCache string
	listen                                                              cli.StringSlice
	concurrency, perIP                                                  int
	implicitTLS                                                         bool
}

func main() {
	var c config
	app := program.New("gw-smtpd", "SMTP receiver with the gateway's before-queue policy")
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", Value: "/var/gw/main/control", Destination: &c.controlDir},
		&cli.StringSliceFlag{Name: "listen", Usage: "listen on `HOST:PORT` (repeatable); without it, serve one session on fds 0 and 1", Destination: &c.listen},
		&cli.StringFlag{Name: "acl", Aliases: []string{"x"}, Usage: "apply the compiled tcprules `FILE` to each client (standalone)", Destination: &c.acl},
		&cli.IntFlag{Name: "concurrency", Usage: "at most `N` sessions at once (standalone)", Value: 200, Destination: &c.concurrency},
		&cli.IntFlag{Name: "per-ip", Usage: "at most `N` sessions at once from one address (standalone)", Value: 20, Destination: &c.perIP},
		&cli.StringFlag{Name: "local-host", Usage: "TCPLOCALHOST for standalone sessions (default: control/me)", Destination: &c.localHost},
		&cli.StringFlag{Name: "user", Usage: "after binding, run as `USER` (standalone, started as root)", Destination: &c.user},
		&cli.BoolFlag{Name: "tls", Usage: "implicit TLS from the first byte (port 465)", Destination: &c.implicitTLS},
		&cli.StringFlag{Name: "checkpassword", Usage: "offer AUTH after STARTTLS, verified by checkpassword `PROGRAM` (with arguments)", Destination: &c.checkpw},
		&cli.StringFlag{Name: "greylist", Usage: "greylist untrusted clients, triplets in the bbolt `FILE`", Destination: &c.greylistDB},
		&cli.StringFlag{Name: "callout-cache", Usage: "cache recipient callout answers in the bbolt `FILE`", Destination: &c.calloutCache},
	}
	app.Action = func(*cli.Context) error { return run(&c) }
	program.Run(app)
}

func run(c *config) error {
	log := logline.Stderr
	keep := &lasting{}
	cfg, err := configure(c, keep)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	if c.implicitTLS && cfg.TLS == nil {
		return program.Fail(program.ExitPermanent, "--tls needs control/servercert.pem")
	}
	if len(c.listen.Value()) == 0 {
		if c.user != "" {
			return program.Fail(program.ExitPermanent, "--user is for standalone mode; under tcpserver use setuidgid")
		}
		smtpd.Serve(tcpserver.StdioConn(), cfg, tcpserver.ClientFromEnv(os.LookupEnv))
		return nil
	}
	lns, err := tcpserver.Bind(c.listen.Value(), c.user, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &smtpd.Listener{Cfg: cfg, ACL: c.acl, LocalHost: c.localHost, MaxConns: c.concurrency, MaxPerIP: c.perIP, Getenv: os.Getenv}
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
	cfg, err := configure(c, keep)
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
