package tcpserver

import (
	"errors"
	"path/filepath"

	"gw/lib/trustpath"
)

// Options are the settings gw-smtpd and gw-qmtpd share: where their
// control files are, and how they listen when standalone. Their mains
// declare the flags that set them.
type Options struct {
	ControlDir  string
	Listen      []string // HOST:PORT addresses; none: one session on fds 0 and 1
	ACL         string
	Concurrency int
	PerIP       int
	LocalHost   string
	User        string
}

// ErrUserUnderTcpserver refuses --user without --listen: under tcpserver
// the privilege drop is setuidgid's.
var ErrUserUnderTcpserver = errors.New("--user is for standalone mode; under tcpserver use setuidgid")

// Standalone reports whether the program listens itself (--listen given),
// or serves one session on fds 0 and 1.
func (o *Options) Standalone() (bool, error) {
	if len(o.Listen) > 0 {
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
