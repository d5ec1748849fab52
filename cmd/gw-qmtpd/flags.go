package main

import (
	"github.com/urfave/cli/v2"

	"gw/lib/tcpserver"
)

// listenFlags declares the options gw-qmtpd shares with gw-smtpd (tcpserver.Options);
// concurrency is --concurrency's default.
func listenFlags(o *tcpserver.Options, concurrency int) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", Value: "/var/gw/main/control", Destination: &o.ControlDir},
		&cli.StringSliceFlag{Name: "listen", Usage: "listen on `HOST:PORT` (repeatable); without it, serve one session on fds 0 and 1",
			Action: func(_ *cli.Context, v []string) error { o.Listen = v; return nil }},
		&cli.StringFlag{Name: "acl", Aliases: []string{"x"}, Usage: "apply the compiled tcprules `FILE` to each client (standalone)", Destination: &o.ACL},
		&cli.IntFlag{Name: "concurrency", Usage: "at most `N` sessions at once (standalone)", Value: concurrency, Destination: &o.Concurrency},
		&cli.IntFlag{Name: "per-ip", Usage: "at most `N` sessions at once from one address (standalone)", Value: 20, Destination: &o.PerIP},
		&cli.StringFlag{Name: "local-host", Usage: "TCPLOCALHOST for standalone sessions (default: control/me)", Destination: &o.LocalHost},
		&cli.StringFlag{Name: "user", Usage: "after binding, run as `USER` (standalone, started as root)", Destination: &o.User},
	}
}
