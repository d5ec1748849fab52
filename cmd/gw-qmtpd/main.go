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
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/qmtp"
	"gw/lib/tcpserver"
)

type config struct{ tcpserver.Options }

func main() {
	var c config
	app := program.New("gw-qmtpd", "QMTP receiver")
	app.Flags = c.Flags(100)
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
	standalone, err := c.Standalone()
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	if !standalone {
		qmtp.Serve(tcpserver.StdioConn(), cfg, tcpserver.ClientFromEnv(os.LookupEnv))
		return nil
	}
	lns, err := tcpserver.Bind(c.Listen.Value(), c.User, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &tcpserver.Listener{ACL: c.ACL, LocalHost: c.LocalHost, MaxConns: c.Concurrency, MaxPerIP: c.PerIP,
		Getenv: os.Getenv, Log: log,
		Session: func(conn net.Conn, lookup func(string) (string, bool)) {
			qmtp.Serve(conn, cfg, tcpserver.ClientFromEnv(lookup))
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
