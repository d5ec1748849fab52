// Command gw-qmtpd is gw's QMTP receiver: packages pipelined on one
// connection, relay control as gw-smtpd's, each message streamed to the
// queue injector. It listens itself (--listen) or serves one session on
// fds 0 and 1 under tcpserver. See gw-qmtpd(8).
package main

import (
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/control"
	"gw/lib/dns"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/qmtp"
	"gw/lib/ratelimit"
	"gw/lib/state"
	"gw/lib/tcpserver"
)

type config struct {
	tcpserver.Options
	remoteHost, noRemoteHost, paranoid bool
}

func main() {
	var c config
	app := program.New("gw-qmtpd", "QMTP receiver")
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"} // -h is tcpserver's
	app.Flags = append(listenFlags(&c.Options, 100), c.hostFlags()...)
	app.Action = func(*cli.Context) error { return run(&c) }
	program.Run(app)
}

func run(c *config) error {
	log := logline.Stderr
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
	standalone, err := c.Standalone()
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	// The injector is chosen here, once (handoff.Chooser); under
	// tcpserver a rule's QMAILQUEUE is already the process's.
	injectors := handoff.NewChooser(os.Getenv)
	if !standalone {
		cl := tcpserver.ClientFromEnv(os.LookupEnv)
		cl.Injector, cl.Space = injectors.Default(), injectors.DefaultSpace()
		qmtp.Serve(tcpserver.StdioConn(), cfg, cl)
		return nil
	}
	lns, err := tcpserver.Bind(c.Listen, c.User, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &tcpserver.Listener{ACL: c.ACL, LocalHost: c.LocalHost, Hosts: c.hosts(), MaxConns: c.Concurrency, MaxPerIP: c.PerIP,
		Log: log,
		Session: func(conn net.Conn, lookup func(string) (string, bool)) {
			cl := tcpserver.ClientFromEnv(lookup)
			cl.Injector, cl.Space = injectors.For(lookup), injectors.SpaceFor(lookup)
			qmtp.Serve(conn, cfg, cl)
		},
		// QMTP has no greeting to refuse with: a closed connection is a
		// temporary failure for the client, which comes back.
		Refuse: func(conn net.Conn, why tcpserver.Refusal) {
			if why != tcpserver.ACLTrouble {
				log.Info("busy", "ip", tcpserver.AddrPort(conn.RemoteAddr()).Addr().Unmap(), "reason", []string{"concurrency", "per_ip"}[why])
			}
			conn.Close()
		},
	}
	if l.LocalHost == "" {
		l.LocalHost = cfg.Hostname
	}
	// gw-qmtpd has nothing to re-read on SIGHUP: it reads its controls
	// once at start, and a supervisor restart reads them again.
	err = tcpserver.ServeAll(lns, func(ln net.Listener) error { return l.Serve(ln, 30*time.Second) }, nil, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "accept: %v", err)
	}
	return nil
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
