// Package tcpserver runs a session for each connection of a listening
// socket the way ucspi-tcp's tcpserver runs a program for each: it
// computes tcpserver's environment for the client, applies the ACL
// database's rule (deny drops the connection without a word, as tcpserver
// does), and limits sessions overall and per client address. Under a real
// tcpserver the same Client comes from the process environment and the
// connection from fds 0 and 1 (StdioConn). gw-smtpd and gw-qmtpd share it.
package tcpserver

import (
	"net"
	"os"
	"strconv"
	"time"

	"gw/lib/handoff"
	"gw/lib/ratelimit"
)

// Client is what a listener knows about one connection: the environment
// tcpserver sets (or the standalone listener computes the same way), with
// the ACL rule's assignments applied.
type Client struct {
	RemoteIP      string // TCPREMOTEIP
	RemotePort    string // TCPREMOTEPORT
	RemoteHost    string // TCPREMOTEHOST, when HasRemoteHost
	HasRemoteHost bool
	RemoteInfo    string // TCPREMOTEINFO, when HasRemoteInfo
	HasRemoteInfo bool
	LocalIP       string // TCPLOCALIP
	LocalHost     string // TCPLOCALHOST

	Relay        bool   // RELAYCLIENT is set (even empty)
	RelayAppend  string // its value, appended to every recipient (qmail)
	RBLSMTPD     string // rblsmtpd's variable, when HasRBLSMTPD
	HasRBLSMTPD  bool
	Databytes    int64 // DATABYTES, when HasDatabytes
	HasDatabytes bool
	NoGreylist   bool            // GW_NOGREYLIST is set
	Peer         bool            // GW_PEER is set: a gw instance, whose X-Gw-Trace is believed
	Rates        ratelimit.Rules // RATE_CONN, RATE_MSG, RATE_RCPT, RATE_BY, RATE_BAN
	RatesErr     error           // a malformed RATE_ variable, for the log

	// Message authentication's per-face overrides (gw-auth(5)): the
	// variable's value, when set.
	SPFPolicy      string // SPFPOLICY
	HasSPFPolicy   bool
	DMARCPolicy    string // DMARCPOLICY
	HasDMARCPolicy bool
	ARCSeal        bool // ARCSEAL is set

	// MILTERS picks the face's milters among control/milters, when set.
	Milters    string
	HasMilters bool

	Rule string // the ACL rule that applied, for the log
	// Injector takes the client's messages and Space is its queue's
	// filesystem, for the check at MAIL: the listener's main chose both
	// (handoff.Chooser), never this package. A nil Injector: every message
	// gets a temporary refusal; a zero Space: never short.
	Injector handoff.Injector
	Space    handoff.Space
}

// ClientFromEnv builds a Client from environment lookups (os.LookupEnv
// under tcpserver; the computed environment when standalone), all but
// its Injector and Space, which the caller sets.
func ClientFromEnv(lookup func(string) (string, bool)) Client {
	get := func(k string) string { v, _ := lookup(k); return v }
	var c Client
	c.RemoteIP = get("TCPREMOTEIP")
	c.RemotePort = get("TCPREMOTEPORT")
	c.RemoteHost, c.HasRemoteHost = lookup("TCPREMOTEHOST")
	c.RemoteInfo, c.HasRemoteInfo = lookup("TCPREMOTEINFO")
	c.LocalIP = get("TCPLOCALIP")
	c.LocalHost = get("TCPLOCALHOST")
	c.RelayAppend, c.Relay = lookup("RELAYCLIENT")
	c.RBLSMTPD, c.HasRBLSMTPD = lookup("RBLSMTPD")
	if v, ok := lookup("DATABYTES"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			c.Databytes, c.HasDatabytes = n, true
		}
	}
	_, c.NoGreylist = lookup("GW_NOGREYLIST")
	_, c.Peer = lookup("GW_PEER")
	c.Rates, c.RatesErr = ratelimit.FromEnv(lookup)
	c.SPFPolicy, c.HasSPFPolicy = lookup("SPFPOLICY")
	c.DMARCPolicy, c.HasDMARCPolicy = lookup("DMARCPOLICY")
	_, c.ARCSeal = lookup("ARCSEAL")
	c.Milters, c.HasMilters = lookup("MILTERS")
	c.Rule = get("GW_ACLRULE")
	return c
}

// StdioConn returns the connection a launcher such as tcpserver handed
// over on fds 0 and 1: the socket itself when fd 0 is one, else the two
// descriptors as one connection (pipes, in tests or behind sslserver-style
// launchers).
func StdioConn() net.Conn {
	if c, err := net.FileConn(os.Stdin); err == nil {
		return c
	}
	return &stdioConn{in: os.Stdin, out: os.Stdout}
}

type stdioConn struct{ in, out *os.File }

func (c *stdioConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *stdioConn) Close() error {
	c.in.Close()
	return c.out.Close()
}
func (c *stdioConn) LocalAddr() net.Addr                { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr               { return stdioAddr{} }
func (c *stdioConn) SetDeadline(t time.Time) error      { c.in.SetDeadline(t); return c.out.SetDeadline(t) }
func (c *stdioConn) SetReadDeadline(t time.Time) error  { return c.in.SetReadDeadline(t) }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return c.out.SetWriteDeadline(t) }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }
