package smtpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"gw/lib/acl"
)

// Listener runs sessions for the connections of a listening socket, the
// way tcpserver would run gw-smtpd for each: it computes tcpserver's
// environment for the client, applies the ACL database's rule (deny drops
// the connection without a word, as tcpserver does), and limits sessions
// overall and per client address.
type Listener struct {
	Cfg       *Config
	ACL       string // compiled rules (gw-tcprules); "" = every client allowed, no env
	LocalHost string // TCPLOCALHOST, as tcpserver -l gives it
	MaxConns  int    // sessions at once; over it a client gets errTooBusy
	MaxPerIP  int    // sessions at once from one address; 0 = no limit
	// Getenv reads the process's environment for what it may still
	// decide when the rule did not: QMAILQUEUE and GW_QUEUED only.
	Getenv func(string) string

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
	wg    sync.WaitGroup
}

var (
	errTooBusy    = reply(421, "4.7.0", "too many connections, try again later")
	errTooManyIP  = reply(421, "4.7.0", "too many connections from your address, try again later")
	errACLTrouble = reply(421, "4.3.0", "unable to read controls")
)

// Serve accepts connections on ln until it is closed, then waits for the
// sessions under way to end, at most grace.
func (l *Listener) Serve(ln net.Listener, grace time.Duration) error {
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporaryAccept(err) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				l.wait(grace)
				return nil
			}
			return err
		}
		tempDelay = 0
		l.wg.Add(1)
		go l.handle(c)
	}
}

func isTemporaryAccept(err error) bool {
	// EMFILE, ENFILE, ECONNABORTED: survive them as net/http does.
	var se *os.SyscallError
	return errors.As(err, &se)
}

func (l *Listener) wait(grace time.Duration) {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		l.Cfg.Log.Warning("shutdown", "sessions_left", l.total)
	}
}

func (l *Listener) handle(c net.Conn) {
	defer l.wg.Done()
	remote := addrPort(c.RemoteAddr())
	local := addrPort(c.LocalAddr())
	ip := remote.Addr().Unmap()
	if r := l.admit(ip); r != nil {
		l.Cfg.Log.Info("busy", "ip", ip, "code", r.Code)
		writeAndClose(c, r)
		return
	}
	defer l.release(ip)

	env := map[string]string{
		"PROTO":         "TCP",
		"TCPLOCALIP":    acl.RemoteIP(local.Addr()),
		"TCPLOCALPORT":  strconv.Itoa(int(local.Port())),
		"TCPREMOTEIP":   acl.RemoteIP(remote.Addr()),
		"TCPREMOTEPORT": strconv.Itoa(int(remote.Port())),
	}
	if ip.Is6() {
		env["PROTO"] = "TCP6"
	}
	if l.LocalHost != "" {
		env["TCPLOCALHOST"] = l.LocalHost
	}
	if l.ACL != "" {
		d, err := lookupACL(l.ACL, acl.Remote{IP: env["TCPREMOTEIP"]})
		if err != nil {
			// tcpserver drops the client when its rules cannot be read;
			// a 421 tells a legitimate sender to come back.
			l.Cfg.Log.Warning("acl", "ip", env["TCPREMOTEIP"], "err", err)
			writeAndClose(c, errACLTrouble)
			return
		}
		if d.Found {
			env["GW_ACLRULE"] = strconv.Itoa(d.Line)
		}
		if d.Deny {
			l.Cfg.Log.Info("deny", "ip", env["TCPREMOTEIP"], "rule", d.Line)
			c.Close()
			return
		}
		for _, kv := range d.Assignments() {
			env[kv[0]] = kv[1]
		}
	}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		if (k == "QMAILQUEUE" || k == "GW_QUEUED") && l.Getenv != nil {
			v := l.Getenv(k)
			return v, v != ""
		}
		return "", false
	}
	Serve(c, l.Cfg, ClientFromEnv(lookup))
}

func lookupACL(path string, r acl.Remote) (acl.Decision, error) {
	db, err := acl.Open(path)
	if err != nil {
		return acl.Decision{}, err
	}
	defer db.Close()
	return db.Lookup(r)
}

func (l *Listener) admit(ip netip.Addr) *smtp.SMTPError {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP == nil {
		l.perIP = map[netip.Addr]int{}
	}
	if l.MaxConns > 0 && l.total >= l.MaxConns {
		return errTooBusy
	}
	if l.MaxPerIP > 0 && l.perIP[ip] >= l.MaxPerIP {
		return errTooManyIP
	}
	l.total++
	l.perIP[ip]++
	return nil
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func writeAndClose(c net.Conn, r *smtp.SMTPError) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(strconv.Itoa(r.Code) + " " + fmt.Sprintf("%d.%d.%d", r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2]) + " " + r.Message + "\r\n"))
	c.Close()
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
