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

type config struct {
	controlDir, acl, localHost, user string
	listen                           cli.StringSlice
	concurrency, perIP               int
}

func main() {
	var c config
	app := program.New("gw-qmtpd", "QMTP receiver")
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", Value: "/var/gw/main/control", Destination: &c.controlDir},
		&cli.StringSliceFlag{Name: "listen", Usage: "listen on `HOST:PORT` (repeatable); without it, serve one session on fds 0 and 1", Destination: &c.listen},
		&cli.StringFlag{Name: "acl", Aliases: []string{"x"}, Usage: "apply the compiled tcprules `FILE` to each client (standalone)", Destination: &c.acl},
		&cli.IntFlag{Name: "concurrency", Usage: "at most `N` sessions at once (standalone)", Value: 100, Destination: &c.concurrency},
		&cli.IntFlag{Name: "per-ip", Usage: "at most `N` sessions at once from one address (standalone)", Value: 20, Destination: &c.perIP},
		&cli.StringFlag{Name: "local-host", Usage: "TCPLOCALHOST for standalone sessions (default: control/me)", Destination: &c.localHost},
		&cli.StringFlag{Name: "user", Usage: "after binding, run as `USER` (standalone, started as root)", Destination: &c.user},
	}
	app.Action = func(*cli.Context) error { return run(&c) }
	program.Run(app)
}

func run(c *config) error {
	log := logline.Stderr
	cfg, err := qmtp.Load(control.Dir(c.controlDir), log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	if len(c.listen.Value()) == 0 {
		if c.user != "" {
			return program.Fail(program.ExitPermanent, "--user is for standalone mode; under tcpserver use setuidgid")
		}
		qmtp.Serve(tcpserver.StdioConn(), cfg, tcpserver.ClientFromEnv(os.LookupEnv))
		return nil
	}
	lns, err := tcpserver.Bind(c.listen.Value(), c.user, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &tcpserver.Listener{ACL: c.acl, LocalHost: c.localHost, MaxConns: c.concurrency, MaxPerIP: c.perIP,
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
