package tcpserver

import (
	"errors"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"gw/lib/trustpath"
)

// Options are the command-line settings gw-smtpd and gw-qmtpd share: where
// their control files are, and how they listen when standalone.
type Options struct {
	ControlDir  string
	Listen      cli.StringSlice
	ACL         string
	Concurrency int
	PerIP       int
	LocalHost   string
	User        string
}

// Flags declares the options; concurrency is --concurrency's default.
func (o *Options) Flags(concurrency int) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", Value: "/var/gw/main/control", Destination: &o.ControlDir},
		&cli.StringSliceFlag{Name: "listen", Usage: "listen on `HOST:PORT` (repeatable); without it, serve one session on fds 0 and 1", Destination: &o.Listen},
		&cli.StringFlag{Name: "acl", Aliases: []string{"x"}, Usage: "apply the compiled tcprules `FILE` to each client (standalone)", Destination: &o.ACL},
		&cli.IntFlag{Name: "concurrency", Usage: "at most `N` sessions at once (standalone)", Value: concurrency, Destination: &o.Concurrency},
		&cli.IntFlag{Name: "per-ip", Usage: "at most `N` sessions at once from one address (standalone)", Value: 20, Destination: &o.PerIP},
		&cli.StringFlag{Name: "local-host", Usage: "TCPLOCALHOST for standalone sessions (default: control/me)", Destination: &o.LocalHost},
		&cli.StringFlag{Name: "user", Usage: "after binding, run as `USER` (standalone, started as root)", Destination: &o.User},
	}
}

// ErrUserUnderTcpserver refuses --user without --listen: under tcpserver
// the privilege drop is setuidgid's.
var ErrUserUnderTcpserver = errors.New("--user is for standalone mode; under tcpserver use setuidgid")

// Standalone reports whether the program listens itself (--listen given),
// or serves one session on fds 0 and 1.
func (o *Options) Standalone() (bool, error) {
	if len(o.Listen.Value()) > 0 {
		return true, nil
	}
	if o.User != "" {
		return false, ErrUserUnderTcpserver
	}
	return false, nil
}

// Trusted refuses to serve from a control directory or a rules database
// that someone but root or the listener's own user could have changed
// (trustpath): the listener's relay policy comes from them. The rules
// database's directory counts too, since whoever may write there may
// rename another database over it.
func (o *Options) Trusted() error {
	if err := trustpath.Dir("control directory", o.ControlDir); err != nil {
		return err
	}
	if o.ACL == "" {
		return nil
	}
	if err := trustpath.File("rules directory", filepath.Dir(o.ACL)); err != nil {
		return err
	}
	return trustpath.File("rules database", o.ACL)
}
