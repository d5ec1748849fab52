package listener

import "github.com/urfave/cli/v2"

// Flags declares o's flags for a listener's main, which adds its own:
// tcpserver's options, and -h, -H and -p under tcpserver's letters, so
// that a run script moving from tcpserver to --listen keeps its options.
// concurrency is --concurrency's default.
func (o *Options) Flags(concurrency int) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", Value: "/var/gw/main/control", Destination: &o.ControlDir},
		&cli.StringSliceFlag{Name: "listen", Usage: "listen on `HOST:PORT` (repeatable); without it, serve one session on fds 0 and 1",
			Action: func(_ *cli.Context, v []string) error { o.Listen = v; return nil }},
		&cli.StringFlag{Name: "acl", Aliases: []string{"x"}, Usage: "apply the compiled tcprules `FILE` to each client (standalone)", Destination: &o.ACL},
		&cli.IntFlag{Name: "concurrency", Usage: "at most `N` sessions at once (standalone)", Value: concurrency, Destination: &o.Concurrency},
		&cli.IntFlag{Name: "per-ip", Usage: "at most `N` sessions at once from one address (standalone)", Value: 20, Destination: &o.PerIP},
		&cli.StringFlag{Name: "local-host", Usage: "TCPLOCALHOST `NAME` for standalone sessions (default: control/me)", Destination: &o.LocalHost},
		&cli.StringFlag{Name: "user", Usage: "after binding, run as `USER` (standalone, started as root)", Destination: &o.User},
		&cli.BoolFlag{Name: "remote-host", Aliases: []string{"h"}, Value: true, Destination: &o.RemoteHost,
			Usage: "look up each client's name (PTR) for TCPREMOTEHOST and the host rules (standalone)"},
		&cli.BoolFlag{Name: "no-remote-host", Aliases: []string{"H"}, Destination: &o.NoRemoteHost,
			Usage: "look up no client names: TCPREMOTEHOST unset, host rules never match (standalone; wins over -h)"},
		&cli.BoolFlag{Name: "paranoid", Aliases: []string{"p"}, Destination: &o.Paranoid,
			Usage: "keep a client's name only if it resolves back to the client's address (standalone)"},
	}
}
