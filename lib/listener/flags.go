package listener

import (
	"errors"

	"github.com/urfave/cli/v2"

	"gw/lib/instdir"
)

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

// InstanceFlags declares --root and --instance for a listener: serve the
// instance NAME under DIR as its service would, without spelling out
// each of its paths.
func InstanceFlags(root, name *string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: instdir.DefaultRoot, Destination: root},
		&cli.StringFlag{Name: "instance", Usage: "serve the instance `NAME` under the root: its control files, ACL and injector socket", Destination: name},
	}
}

// UseInstance points o at the instance d: its control directory, and,
// listening itself, its compiled rules table (tcp.smtp, tcp.qmtp) unless
// --acl names others. --control-dir beside an instance is bad usage, as
// in gw-scan: two answers to "which control files" is one too many. The
// getenv it returns gives the instance's gw-queued socket as GW_QUEUED
// when the environment chooses no injector of its own, so the listener
// hands mail to its instance's queue, not to whatever gw-queue is on PATH.
func (o *Options) UseInstance(x *cli.Context, d instdir.Dir, table string, getenv func(string) string) (func(string) string, error) {
	if x.IsSet("control-dir") {
		return nil, errors.New("--instance and --control-dir exclude each other")
	}
	o.ControlDir = d.Control()
	if standalone, _ := o.Standalone(); standalone && !x.IsSet("acl") {
		o.ACL = d.ACL(table)
	}
	if getenv("QMAILQUEUE") != "" || getenv("GW_QUEUED") != "" || getenv("GW_QUEUE") != "" {
		return getenv, nil
	}
	sock := d.InjectSocket()
	return func(k string) string {
		if k == "GW_QUEUED" {
			return sock
		}
		return getenv(k)
	}, nil
}
