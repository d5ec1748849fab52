package smtpd

import (
	"net"
	"sync/atomic"
	"time"

	"gw/lib/handoff"
	"gw/lib/smtpserver"
	"gw/lib/tcpserver"
)

// Listener runs SMTP sessions for the connections of a listening socket,
// the way tcpserver would run gw-smtpd for each (lib/tcpserver does the
// environment, the ACL rule and the limits); a client over a limit gets
// errTooBusy or errTooManyIP.
type Listener struct {
	Cfg       *Config               // the configuration at start; see SetConfig
	ACL       string                // compiled rules (gw-tcprules); "" = every client allowed, no env
	LocalHost string                // TCPLOCALHOST, as tcpserver -l gives it
	Hosts     *tcpserver.HostLookup // TCPREMOTEHOST's lookup; nil: none (tcpserver -H)
	MaxConns  int                   // sessions at once; over it a client gets errTooBusy
	MaxPerIP  int                   // sessions at once from one address; 0 = no limit
	// Injectors gives each client its injector: main's choice, or the
	// one its rule names.
	Injectors *handoff.Chooser

	cfg atomic.Pointer[Config] // the current one, once SetConfig was called
}

// SetConfig replaces the configuration for the sessions that start from
// now on (control files read again on SIGHUP); sessions under way keep
// the one they started with.
func (l *Listener) SetConfig(c *Config) { l.cfg.Store(c) }

// Config returns the configuration new sessions get.
func (l *Listener) Config() *Config {
	if c := l.cfg.Load(); c != nil {
		return c
	}
	return l.Cfg
}

var (
	errTooBusy    = reply(421, "4.7.0", "too many connections, try again later")
	errTooManyIP  = reply(421, "4.7.0", "too many connections from your address, try again later")
	errACLTrouble = reply(421, "4.3.0", "unable to read controls")
)

// Serve accepts connections on ln until it is closed, then waits for the
// sessions under way to end, at most grace.
func (l *Listener) Serve(ln net.Listener, grace time.Duration) error {
	tl := &tcpserver.Listener{
		ACL: l.ACL, LocalHost: l.LocalHost, Hosts: l.Hosts, MaxConns: l.MaxConns, MaxPerIP: l.MaxPerIP,
		Log: l.Cfg.Log,
		Session: func(c net.Conn, lookup func(string) (string, bool)) {
			cl := ClientFromEnv(lookup)
			cl.Injector, cl.Space = l.Injectors.For(lookup), l.Injectors.SpaceFor(lookup)
			Serve(c, l.Config(), cl)
		},
		Refuse: func(c net.Conn, why tcpserver.Refusal) {
			r := []*smtpserver.Reply{errTooBusy, errTooManyIP, errACLTrouble}[why]
			if why != tcpserver.ACLTrouble {
				l.Config().Log.Info("busy", "ip", tcpserver.AddrPort(c.RemoteAddr()).Addr().Unmap(), "code", r.Code)
			}
			writeAndClose(c, r)
		},
	}
	return tl.Serve(ln, grace)
}

func writeAndClose(c net.Conn, r *smtpserver.Reply) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(r.Line() + "\r\n"))
	c.Close()
}
