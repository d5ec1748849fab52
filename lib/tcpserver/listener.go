package tcpserver

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"gw/lib/acl"
	"gw/lib/logline"
)

// Refusal is why a connection is turned away before its session.
type Refusal int

// Refusals, each answered by the protocol's own words (Listener.Refuse).
const (
	TooBusy    Refusal = iota // MaxConns sessions under way
	TooManyIP                 // MaxPerIP sessions from this address
	ACLTrouble                // the ACL database could not be read
)

// Listener runs Session for each connection of a listening socket.
type Listener struct {
	ACL       string // compiled rules (gw-tcprules); "" = every client allowed, no env
	LocalHost string // TCPLOCALHOST, as tcpserver -l gives it
	// Hosts looks up TCPREMOTEHOST (tcpserver -h, -p); nil looks up
	// nothing (tcpserver -H).
	Hosts    *HostLookup
	MaxConns int // sessions at once; 0 = no limit
	MaxPerIP int // sessions at once from one address; 0 = no limit
	Log      *logline.Logger
	// Session serves one connection whose environment lookup gives
	// (tcpserver's variables and the rule's assignments, nothing of the
	// process's own); it closes c.
	Session func(c net.Conn, lookup func(string) (string, bool))
	// Refuse tells a client it is turned away, logs it and closes c;
	// nil closes without a word. The client's address is c.RemoteAddr().
	Refuse func(c net.Conn, why Refusal)

	mu       sync.Mutex
	total    int
	perIP    map[netip.Addr]int
	conns    map[*drainConn]struct{}
	aclOnce  sync.Once
	aclCache *acl.Cache
	stopping bool
	wg       sync.WaitGroup
}

// Serve accepts connections on ln until it is closed, then waits for the
// sessions under way to end, at most grace.
func (l *Listener) Serve(ln net.Listener, grace time.Duration) error {
	w := newWorkers(l)
	defer w.stop()
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
				l.stopAll()
				l.wait(grace)
				if l.aclCache != nil {
					l.aclCache.Close()
				}
				return nil
			}
			return err
		}
		tempDelay = 0
		l.wg.Add(1)
		w.serve(c)
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
		l.mu.Lock()
		left := l.total
		l.mu.Unlock()
		l.Log.Warning("shutdown", "sessions_left", left)
	}
}

func (l *Listener) refuse(c net.Conn, why Refusal) {
	if l.Refuse == nil {
		c.Close()
		return
	}
	l.Refuse(c, why)
}

func (l *Listener) handle(c net.Conn) {
	defer l.wg.Done()
	remote := AddrPort(c.RemoteAddr())
	local := AddrPort(c.LocalAddr())
	ip := remote.Addr().Unmap()
	if why, busy := l.admit(ip); busy {
		l.refuse(c, why) // Refuse logs it, in the protocol's terms
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
	remoteHost := ""
	hasRemoteHost := false
	if l.Hosts != nil {
		// before the rules, which may match the name (=host, =.domain)
		if remoteHost, hasRemoteHost = l.Hosts.Name(ip); hasRemoteHost {
			env["TCPREMOTEHOST"] = remoteHost
		}
	}
	if l.ACL != "" {
		d, err := l.rules().Lookup(acl.Remote{IP: env["TCPREMOTEIP"], Host: remoteHost, HasHost: hasRemoteHost})
		if err != nil {
			// tcpserver drops the client when its rules cannot be read;
			// a temporary refusal tells a legitimate sender to come back.
			l.Log.Warning("acl", "ip", env["TCPREMOTEIP"], "err", err)
			l.refuse(c, ACLTrouble)
			return
		}
		if d.Found {
			env["GW_ACLRULE"] = strconv.Itoa(d.Line)
		}
		if d.Deny {
			kv := []any{"ip", env["TCPREMOTEIP"]}
			if hasRemoteHost {
				kv = append(kv, "host", remoteHost)
			}
			l.Log.Info("deny", append(kv, "rule", d.Line)...)
			c.Close()
			return
		}
		for _, kv := range d.Assignments() {
			env[kv[0]] = kv[1]
		}
	}
	lookup := func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	dc := &drainConn{Conn: c}
	defer l.track(dc)()
	l.Session(dc, lookup)
}

// rules is the listener's ACL database, kept open between connections
// and reopened when gw-tcprules replaced it (acl.Cache): a new rule set
// counts from the next connection, as under tcpserver.
func (l *Listener) rules() *acl.Cache {
	l.aclOnce.Do(func() { l.aclCache = &acl.Cache{Path: l.ACL} })
	return l.aclCache
}

// admit counts a session in, or says why it may not start.
func (l *Listener) admit(ip netip.Addr) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP == nil {
		l.perIP = map[netip.Addr]int{}
	}
	if l.MaxConns > 0 && l.total >= l.MaxConns {
		return TooBusy, true
	}
	if l.MaxPerIP > 0 && l.perIP[ip] >= l.MaxPerIP {
		return TooManyIP, true
	}
	l.total++
	l.perIP[ip]++
	return 0, false
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// AddrPort returns a connection's address as an address and a port.
func AddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
