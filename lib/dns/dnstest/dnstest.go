// Package dnstest runs Debian's unbound on loopback as the DNS server of
// gw's tests, one unbound process a test, with the records the test adds.
//
// It is a real DNS server, not a stand-in written for the tests: gw's
// resolver (lib/dns) meets the answers, the flags and the UDP and TCP
// behaviour of the kind of server it asks in production, a caching
// resolver such as unbound, instead of a model of DNS written by the
// same hands as the code under test.
//
// Nothing leaves loopback. Unbound listens on one loopback address only
// (127.0.0.1, or 127.a.b.c for StartPort53), and its one
// local zone "." static answers every name from the records added, NXDOMAIN
// for a name without any; it has no trust anchor to refresh and never
// recurses. The only names it would resolve are those told to fail, and
// those it forwards to 127.0.0.1, an address it refuses to query
// (do-not-query-localhost): it answers SERVFAIL without sending anything.
// Its queries would in any case leave from 127.0.0.1 (outgoing-interface),
// which cannot reach beyond the host.
//
// Unbound and unbound-control come with the Debian package unbound, which
// scripts/test-peers.sh installs; without them Start fails the test.
package dnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an unbound process answering on a loopback address, 127.0.0.1
// unless StartPort53 chose another.
type Server struct {
	Addr string // host:port, for GW_DNS

	ip       string // loopback address it listens on
	port     int
	t        testing.TB
	unbound  string // path of unbound
	control  string // path of unbound-control
	dir      string // its directory: configuration, log, pid file
	conf     string // its configuration file
	socket   string // its remote-control socket
	identity string // its answer to id.server: proves a reply is from it
	// body, when set, gives the server settings after the common ones
	// (see config) in place of a local-data server's: StartSigned's
	// authoritative and validating servers.
	body   func(port int) string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited

	mu      sync.Mutex
	records []record // every record added, in the order added
	fails   []string // names told to fail, lowercased FQDNs
}

// record is one record added, as unbound-control reads it.
type record struct {
	owner string // lowercased FQDN
	text  string // zone-file syntax, from miekg/dns
}

// Start starts unbound on a free loopback port; it stops with the test.
// The port is one the kernel gives free for UDP and then also free for
// TCP, but another process may take it before unbound binds it: when
// unbound then fails to bind, Start tries a new port.
func Start(t testing.TB) *Server {
	t.Helper()
	return startOn(t, freeLoopbackPort, nil)
}

// freeLoopbackPort picks a port of 127.0.0.1 free now (see Start).
func freeLoopbackPort() (string, int, error) {
	port, err := pickPort()
	return "127.0.0.1", port, err
}

// StartPort53 starts unbound on port 53 of a loopback address of its
// own, 127.a.b.c, for the resolvers that can only be given an address
// and always ask port 53 (the DNSCACHEIP of ucspi-tcp's tcpserver). The
// address is drawn at random, so that tests running at once each have
// theirs; when it is taken, StartPort53 draws another.
func StartPort53(t testing.TB) *Server {
	t.Helper()
	return startOn(t, func() (string, int, error) {
		return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254)), 53, nil
	}, nil)
}

// IP is the address unbound answers on, without the port.
func (s *Server) IP() string { return s.ip }

// startOn starts unbound on an address pick gives, drawing again when
// unbound cannot bind it; body, if not nil, is Server.body.
func startOn(t testing.TB, pick func() (ip string, port int, err error), body func(port int) string) *Server {
	t.Helper()
	unbound, control := peer("unbound"), peer("unbound-control")
	if unbound == "" || control == "" {
		t.Fatalf("dnstest: unbound and unbound-control are not installed (Debian package unbound): run scripts/test-peers.sh")
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "control.sock")
	if len(socket) >= maxSocketPath {
		// a unix socket's path is limited in length; TMPDIR may be long
		short, err := os.MkdirTemp("/tmp", "dnstest")
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		socket = filepath.Join(short, "control.sock")
	}
	var err error
	for try := 0; try < maxBindTries; try++ {
		var ip string
		var port int
		ip, port, err = pick()
		if err != nil {
			continue
		}
		s := &Server{
			Addr:     net.JoinHostPort(ip, strconv.Itoa(port)),
			ip:       ip,
			port:     port,
			t:        t,
			unbound:  unbound,
			control:  control,
			dir:      dir,
			conf:     filepath.Join(dir, "unbound.conf"),
			socket:   socket,
			identity: fmt.Sprintf("dnstest %d %s %d %d", os.Getpid(), ip, port, time.Now().UnixNano()),
			body:     body,
		}
		err = s.start()
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		if !errors.Is(err, errBind) {
			t.Fatalf("dnstest: %v", err)
		}
	}
	t.Fatalf("dnstest: no loopback address unbound could bind for both UDP and TCP after %d tries: %v", maxBindTries, err)
	return nil
}

// maxBindTries bounds Start's search for a port unbound can bind.
const maxBindTries = 20

// maxSocketPath is the room for a unix socket's path (sun_path, with its
// terminating NUL).
const maxSocketPath = 108

// errBind says unbound could not bind its port.
var errBind = errors.New("unbound could not bind its port")

// peer returns the path of a program of the unbound package, or "".
// /usr/sbin is not on every user's PATH.
func peer(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// pickPort returns a loopback port free for UDP and TCP at the time of
// the call, a variable so a test can hand out ports already taken.
var pickPort = freePort

func freePort() (int, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, err
	}
	l.Close()
	return port, nil
}

// start writes the configuration, starts unbound and waits until it
// answers on both UDP and TCP.
func (s *Server) start() error {
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o644); err != nil {
		return err
	}
	os.Remove(filepath.Join(s.dir, "unbound.log")) // a failed try's
	s.cmd = exec.Command(s.unbound, "-d", "-c", s.conf)
	s.cmd.Dir = s.dir
	s.cmd.Env = environ()
	var stderr bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &stderr, &stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(s.cmd); err != nil {
		return fmt.Errorf("starting %s: %v", s.unbound, err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			said := stderr.String() + s.log()
			if strings.Contains(said, "could not open ports") {
				return fmt.Errorf("%w %s: %s", errBind, s.Addr, said)
			}
			return fmt.Errorf("unbound exited (%v) at start: %s", s.cmd.ProcessState, said)
		default:
		}
		if s.answers("udp") == nil {
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("unbound does not answer at %s after %v: %s", s.Addr, startTimeout, s.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.answers("tcp"); err != nil {
		s.stop()
		return fmt.Errorf("unbound answers over UDP but not TCP at %s: %v", s.Addr, err)
	}
	return nil
}

// startTimeout bounds the wait for unbound to answer after it starts.
const startTimeout = 10 * time.Second

// config is unbound's configuration: see the package comment.
func (s *Server) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by gw's lib/dns/dnstest for one test
server:
	interface: %s
	port: %d
	do-ip4: yes
	do-ip6: no
	do-udp: yes
	do-tcp: yes
	so-reuseport: no
	num-threads: 1
	access-control: 127.0.0.0/8 allow
	username: ""
	chroot: ""
	directory: %q
	pidfile: %q
	use-syslog: no
	logfile: %q
	log-time-ascii: yes
	verbosity: 1
	identity: %q
`, s.ip, s.port, s.dir, filepath.Join(s.dir, "unbound.pid"), filepath.Join(s.dir, "unbound.log"), s.identity)
	if s.body != nil {
		b.WriteString(s.body(s.port))
	} else {
		s.localData(&b)
	}
	fmt.Fprintf(&b, "remote-control:\n\tcontrol-enable: yes\n\tcontrol-interface: %q\n\tcontrol-use-cert: no\n", s.socket)
	return b.String()
}

// localData writes the settings of a server that answers every name from
// the records added, or fails it.
func (s *Server) localData(b *strings.Builder) {
	b.WriteString(`	# no validator, no trust anchor: nothing to fetch or refresh
	module-config: "iterator"
	# records in a fixed order (see load), not rotated
	rrset-roundrobin: no
	msg-cache-size: 1m
	rrset-cache-size: 1m
	# every name is local: the records added, NXDOMAIN for the rest
	local-zone: "." static
	# what unbound would still resolve (the names told to fail) it
	# forwards to 127.0.0.1, an address this forbids it to query; and it
	# would send from 127.0.0.1, which reaches nothing beyond the host
	do-not-query-localhost: yes
	outgoing-interface: 127.0.0.1
`)
	for _, name := range s.fails {
		fmt.Fprintf(b, "\tlocal-zone: %q transparent\n", name)
	}
	for _, name := range s.fails {
		fmt.Fprintf(b, "forward-zone:\n\tname: %q\n\tforward-addr: 127.0.0.1\n", name)
	}
}

// answers checks that unbound, and no other server, answers at Addr over
// network ("udp" or "tcp"): it asks for id.server.
func (s *Server) answers(network string) error {
	m := new(dns.Msg)
	m.SetQuestion("id.server.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	c := &dns.Client{Net: network, Timeout: 200 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		return err
	}
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok && strings.Join(txt.Txt, "") == s.identity {
			return nil
		}
	}
	return fmt.Errorf("id.server answered %v, want %q", r.Answer, s.identity)
}

// stop ends unbound; when the test failed, it logs unbound's log.
func (s *Server) stop() {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.t.Failed() {
		s.t.Logf("dnstest: unbound's log (%s):\n%s", s.Addr, s.log())
	}
}

// log returns unbound's log file.
func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "unbound.log"))
	return string(b)
}

// Add adds records in zone-file syntax, one a string, e.g.
// "example.net. MX 10 mx.example.net." or "mx.example.net. A 127.0.0.2".
// Unbound answers them from the moment Add returns. The records of a name
// and type come in the order one Add has them; those a later Add gives
// come before them (until Fail puts every record back in the order added).
func (s *Server) Add(t testing.TB, lines ...string) {
	t.Helper()
	var added []record
	for _, line := range lines {
		rr, err := dns.NewRR(line)
		if err == nil && rr == nil {
			err = errors.New("no record")
		}
		if err != nil {
			t.Fatalf("dnstest: record %q: %v", line, err)
		}
		added = append(added, record{strings.ToLower(rr.Header().Name), rr.String()})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, added...)
	if err := s.load(added); err != nil {
		t.Fatalf("dnstest: %v", err)
	}
}

// Fail makes every query for name, and for the names below it, answer
// SERVFAIL, whatever records they have or are given later. It reloads
// unbound with the name in its configuration (unbound-control cannot add
// the local zone the failure needs without breaking the lookup of other
// names: a local zone it adds at run time has no parent zone) and adds
// the records again.
func (s *Server) Fail(name string) {
	s.t.Helper()
	name = strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(name); !ok {
		s.t.Fatalf("dnstest: Fail(%q): not a domain name", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.fails {
		if f == name {
			return
		}
	}
	s.fails = append(s.fails, name)
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o644); err != nil {
		s.t.Fatalf("dnstest: %v", err)
	}
	// a command sent after the reply to reload is read by the reloaded
	// server, which has lost the records added at run time
	if err := s.unboundControl("", "reload"); err != nil {
		s.t.Fatalf("dnstest: %v", err)
	}
	if err := s.load(s.records); err != nil {
		s.t.Fatalf("dnstest: %v", err)
	}
}

// load gives unbound the records, except those of names told to fail.
// Unbound puts each record it is given before those it has of the same
// name and type: load gives them last first, so that they come in the
// order of records.
func (s *Server) load(records []record) error {
	var in strings.Builder
	n := 0
	for i := len(records) - 1; i >= 0; i-- {
		if r := records[i]; !s.failed(r.owner) {
			in.WriteString(r.text + "\n")
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return s.unboundControl(in.String(), "local_datas", fmt.Sprintf("added %d datas", n))
}

// failed reports whether name is a name told to fail or below one.
func (s *Server) failed(name string) bool {
	for _, f := range s.fails {
		if dns.IsSubDomain(f, name) {
			return true
		}
	}
	return false
}

// unboundControl runs unbound-control command with stdin and checks that
// it succeeds and says want ("ok" if want is not given).
func (s *Server) unboundControl(stdin, command string, want ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.control, "-c", s.conf, command)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	said := strings.TrimSpace(string(out))
	ok := "ok"
	if len(want) > 0 {
		ok = want[0]
	}
	if err != nil || said != ok {
		return fmt.Errorf("unbound-control %s: %v: said %q, want %q", command, err, said, ok)
	}
	return nil
}

// environ is the test's environment without NOTIFY_SOCKET: unbound,
// built with systemd support, would tell a service manager it is ready.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return env
}

// spawn starts cmd from one OS thread that never exits: Pdeathsig kills
// unbound when the thread that started it ends, and this one ends only
// with the test binary, killed or not.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range spawnRequests {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd, done}
	return <-done
}

var (
	spawnOnce     sync.Once
	spawnRequests = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}
