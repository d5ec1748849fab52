// Package dnstest runs a real DNS server on loopback for tests: it answers
// from a table of records over UDP and TCP, NXDOMAIN for names it does not
// know, and SERVFAIL for names told to fail.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server on 127.0.0.1.
type Server struct {
	Addr string // host:port, for GW_DNS

	mu      sync.Mutex
	records map[string][]dns.RR // by lowercased FQDN
	fail    map[string]bool
	udp     *dns.Server
	tcp     *dns.Server
}

// Start starts a server on a free loopback port; it stops with the test.
// The kernel picks the UDP port and TCP must then bind the same number,
// which another socket may already hold for TCP (ephemeral ports are
// scarce after a benchmark's TIME_WAITs): Start then tries a new port.
func Start(t testing.TB) *Server {
	t.Helper()
	var err error
	for try := 0; try < maxBindTries; try++ {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		var l net.Listener
		l, err = listenTCP("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		return serve(t, pc, l)
	}
	t.Fatalf("dnstest: no loopback port free for both UDP and TCP after %d tries: %v", maxBindTries, err)
	return nil
}

// listenTCP is net.Listen, a variable so a test can make the port taken.
var listenTCP = net.Listen

// maxBindTries bounds Start's search for a port free for UDP and TCP.
const maxBindTries = 20

func serve(t testing.TB, pc net.PacketConn, l net.Listener) *Server {
	s := &Server{Addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}, fail: map[string]bool{}}
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: l, Handler: s}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	t.Cleanup(func() { s.udp.Shutdown(); s.tcp.Shutdown() })
	return s
}

// Add adds records in zone-file syntax, one a string, e.g.
// "example.net. MX 10 mx.example.net." or "mx.example.net. A 127.0.0.2".
func (s *Server) Add(t testing.TB, lines ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("dnstest: record %q: %v", line, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// Fail makes every query for name answer SERVFAIL.
func (s *Server) Fail(name string) {
	s.mu.Lock()
	s.fail[strings.ToLower(dns.Fqdn(name))] = true
	s.mu.Unlock()
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	failed, rrs := s.fail[name], s.records[name]
	s.mu.Unlock()
	switch {
	case failed:
		m.Rcode = dns.RcodeServerFailure
	case len(rrs) == 0:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	w.WriteMsg(m)
}
