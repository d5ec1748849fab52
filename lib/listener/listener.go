// Package listener is the one shape of gw's listeners, gw-smtpd and
// gw-qmtpd: the options they share (tcpserver's), and one Run that either
// serves the session tcpserver handed over on fds 0 and 1, or binds every
// address, drops privileges and serves them itself. The protocol is the
// program's; how a listener comes to a connection is the same for both,
// so it is written once.
package listener

import (
	"net"
	"os"
	"time"

	"gw/lib/dns"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/tcpserver"
)

// grace is how long a stopping listener waits for its sessions.
const grace = 30 * time.Second

// Options are tcpserver's options and its -h, -H and -p (Flags declares
// them for a program's main).
type Options struct {
	tcpserver.Options
	RemoteHost   bool // -h: look up TCPREMOTEHOST
	NoRemoteHost bool // -H: look up nothing; wins over -h
	Paranoid     bool // -p: keep a name only if it resolves back
}

// Hosts is the standalone listener's TCPREMOTEHOST lookup, through the
// resolver GW_DNS names (the one the RBL checks use), or nil with -H.
func (o *Options) Hosts() *tcpserver.HostLookup {
	if !o.RemoteHost || o.NoRemoteHost {
		return nil
	}
	return &tcpserver.HostLookup{Resolver: dns.FromEnv(), Paranoid: o.Paranoid}
}

// Program is what a listener program brings to Run: its protocol.
type Program struct {
	Log *logline.Logger
	// Injectors is main's choice of injector (handoff.Chooser): the
	// process's, or the one a client's rule names.
	Injectors *handoff.Chooser
	// Me is TCPLOCALHOST when --local-host does not say (control/me).
	Me string
	// Session serves one connection for client cl, whose injector is
	// chosen; it closes conn.
	Session func(conn net.Conn, cl tcpserver.Client)
	// Refuse answers a client turned away before its session, in the
	// protocol's words, logs it and closes conn (tcpserver.Listener).
	Refuse func(conn net.Conn, why tcpserver.Refusal)
	// Bind, if set, runs just before the addresses are bound, while the
	// process still has the privileges it started with (a metrics
	// listener); its error is a usage error.
	Bind func() error
	// Reload, if set, is SIGHUP's: the controls read again.
	Reload func()
}

// Run serves: under tcpserver (no --listen) the one session on fds 0 and
// 1, whose client is the environment tcpserver set; standalone, every
// --listen address until SIGTERM, with tcpserver's limits, rules and
// lookups. Its errors are program.Fail's, with qmail's exit codes.
func Run(o *Options, p Program) error {
	standalone, err := o.Standalone()
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	if !standalone {
		// Under tcpserver a rule's QMAILQUEUE is already the process's.
		cl := tcpserver.ClientFromEnv(os.LookupEnv)
		cl.Injector, cl.Space = p.Injectors.Default(), p.Injectors.DefaultSpace()
		p.Session(tcpserver.StdioConn(), cl)
		return nil
	}
	if p.Bind != nil {
		if err := p.Bind(); err != nil {
			return program.Fail(program.ExitPermanent, "%v", err)
		}
	}
	lns, err := tcpserver.Bind(o.Listen, o.User, p.Log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	l := &tcpserver.Listener{
		ACL: o.ACL, LocalHost: o.LocalHost, Hosts: o.Hosts(), MaxConns: o.Concurrency, MaxPerIP: o.PerIP,
		Log: p.Log, Refuse: p.Refuse,
		Session: func(conn net.Conn, lookup func(string) (string, bool)) {
			cl := tcpserver.ClientFromEnv(lookup)
			cl.Injector, cl.Space = p.Injectors.For(lookup), p.Injectors.SpaceFor(lookup)
			p.Session(conn, cl)
		},
	}
	if l.LocalHost == "" {
		l.LocalHost = p.Me
	}
	err = tcpserver.ServeAll(lns, func(ln net.Listener) error { return l.Serve(ln, grace) }, p.Reload, p.Log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "accept: %v", err)
	}
	return nil
}
