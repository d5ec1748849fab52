package smtpd

import (
	"net"
	"sync/atomic"
	"time"

	"gw/lib/smtpserver"
	"gw/lib/tcpserver"
)

// Listener is gw-smtpd's part of a standalone listener (lib/listener
// does the rest, as for gw-qmtpd): the configuration each new session
// gets, replaced on reload, and the words for a client turned away
// before its session (errTooBusy, errTooManyIP).
type Listener struct {
	Cfg *Config // the configuration at start; see SetConfig

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

// Session serves one SMTP session on c with the configuration in force.
func (l *Listener) Session(c net.Conn, cl Client) { Serve(c, l.Config(), cl) }

// Refuse answers a client turned away (tcpserver.Listener's Refuse).
func (l *Listener) Refuse(c net.Conn, why tcpserver.Refusal) {
	r := []*smtpserver.Reply{errTooBusy, errTooManyIP, errACLTrouble}[why]
	if why != tcpserver.ACLTrouble {
		l.Config().Log.Info("busy", "ip", tcpserver.AddrPort(c.RemoteAddr()).Addr().Unmap(), "code", r.Code)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(r.Line() + "\r\n"))
	c.Close()
}
