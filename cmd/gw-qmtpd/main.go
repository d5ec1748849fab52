// Command gw-qmtpd is gw's QMTP receiver: packages pipelined on one
// connection, relay control as gw-smtpd's, each message streamed to the
// queue injector. It listens itself (--listen) or serves one session on
// fds 0 and 1 under tcpserver. See gw-qmtpd(8).
package main

import (
	"net"
	"os"

	"github.com/urfave/cli/v2"

	"gw/lib/control"
	"gw/lib/handoff"
	"gw/lib/instdir"
	"gw/lib/listener"
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/qmtp"
	"gw/lib/ratelimit"
	"gw/lib/runtimetune"
	"gw/lib/state"
	"gw/lib/tcpserver"
)

type config struct {
	listener.Options
	rates          string // --rates: the host's bbolt file of rate counts
	root, instance string
	getenv         func(string) string // the environment, with the instance's injector
}

func main() {
	var c config
	app := program.New("gw-qmtpd", "QMTP receiver")
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"} // -h is tcpserver's
	app.Flags = append(c.Options.Flags(100),
		&cli.StringFlag{Name: "rates", Destination: &c.rates,
			Usage: "keep rate counts and bans in the bbolt `FILE` (see gw-smtpd(8))"},
	)
	app.Flags = append(app.Flags, listener.InstanceFlags(&c.root, &c.instance)...)
	app.Action = func(x *cli.Context) error {
		c.getenv = os.Getenv
		if c.instance != "" {
			d, err := instdir.Choose(c.root, c.instance)
			if err == nil {
				c.getenv, err = c.UseInstance(x, d, "tcp.qmtp", os.Getenv)
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
	if err := c.Trusted(); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	cfg, err := qmtp.Load(control.Dir(c.ControlDir), log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	shared, err := state.Load(control.Dir(c.ControlDir), log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	cfg.Limits = &ratelimit.Limiter{Local: &state.Memory{}, Log: log}
	if shared != nil {
		cfg.Limits.Store = shared
	}
	if c.rates != "" {
		// Standalone the listener is the file's one writer and keeps
		// it open; under tcpserver each count opens it.
		standalone, _ := c.Standalone()
		host := &state.Bolt{Path: c.rates, Keep: standalone}
		defer host.Close()
		cfg.Limits.Host = host
	}
	// gw-qmtpd has nothing to re-read on SIGHUP: it reads its controls
	// once at start, and a supervisor restart reads them again.
	return listener.Run(&c.Options, listener.Program{
		Log:       log,
		Injectors: handoff.NewChooser(c.getenv), // chosen here, once
		Me:        cfg.Hostname,
		Session:   func(conn net.Conn, cl tcpserver.Client) { qmtp.Serve(conn, cfg, cl) },
		// QMTP has no greeting to refuse with: a closed connection is a
		// temporary failure for the client, which comes back.
		Refuse: func(conn net.Conn, why tcpserver.Refusal) {
			if why != tcpserver.ACLTrouble {
				log.Info("busy", "ip", tcpserver.AddrPort(conn.RemoteAddr()).Addr().Unmap(), "reason", []string{"concurrency", "per_ip"}[why])
			}
			conn.Close()
		},
	})
}
