package dnstest

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// query asks the server over network ("udp" or "tcp") and returns the
// rcode and the answer section, each record as "TYPE rdata".
func query(t *testing.T, s *Server, network, name string, qtype uint16) (string, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	var answer []string
	for _, rr := range r.Answer {
		h := rr.Header()
		answer = append(answer, dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String()))
	}
	return dns.RcodeToString[r.Rcode], answer
}

// expect checks one query's rcode and answer over UDP and over TCP.
func expect(t *testing.T, s *Server, name string, qtype uint16, rcode string, answer ...string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		gotRcode, got := query(t, s, network, name, qtype)
		if gotRcode != rcode || strings.Join(got, "|") != strings.Join(answer, "|") {
			t.Errorf("%s %s over %s: %s %q, want %s %q", name, dns.TypeToString[qtype], network, gotRcode, got, rcode, answer)
		}
	}
}

func TestRecords(t *testing.T) {
	s := Start(t)
	expect(t, s, "example.net", dns.TypeMX, "NXDOMAIN")
	s.Add(t, "example.net. MX 10 mx.example.net.", "example.net. MX 20 backup.example.net.",
		"mx.example.net. A 127.0.0.2", "mx.example.net. AAAA ::1",
		"nowhere.test. MX 0 .",
		"2.0.0.127.zen.test. A 127.0.0.2", `2.0.0.127.zen.test. TXT "listed" "see https://zen.test/"`,
		"Mixed.Case.example. A 127.0.0.3")
	// added after a query that found nothing: answered now, not cached
	expect(t, s, "example.net", dns.TypeMX, "NOERROR", "MX 10 mx.example.net.", "MX 20 backup.example.net.")
	expect(t, s, "mx.example.net", dns.TypeA, "NOERROR", "A 127.0.0.2")
	expect(t, s, "mx.example.net", dns.TypeAAAA, "NOERROR", "AAAA ::1")
	expect(t, s, "nowhere.test", dns.TypeMX, "NOERROR", "MX 0 .")
	expect(t, s, "2.0.0.127.zen.test", dns.TypeA, "NOERROR", "A 127.0.0.2")
	expect(t, s, "2.0.0.127.zen.test", dns.TypeTXT, "NOERROR", `TXT "listed" "see https://zen.test/"`)
	expect(t, s, "mixed.case.EXAMPLE", dns.TypeA, "NOERROR", "A 127.0.0.3")
	// a name with records, none of the type asked: no data, not NXDOMAIN
	expect(t, s, "example.net", dns.TypeA, "NOERROR")
	// names without records, in and out of the zones above
	for _, name := range []string{"nothing.example", "zzzzzzzzzzzz.example.net", "3.0.0.127.zen.test", "example.com", "www.google.com", "com"} {
		expect(t, s, name, dns.TypeA, "NXDOMAIN")
		expect(t, s, name, dns.TypeMX, "NXDOMAIN")
	}
	// a second Add adds to the records of a name, before those of the first
	s.Add(t, "mx.example.net. A 127.0.0.4", "mx.example.net. A 127.0.0.5")
	expect(t, s, "mx.example.net", dns.TypeA, "NOERROR", "A 127.0.0.4", "A 127.0.0.5", "A 127.0.0.2")
}

func TestFail(t *testing.T) {
	s := Start(t)
	s.Add(t, "broken.example. MX 10 mx.example.net.", "sub.broken.example. A 127.0.0.5",
		"mx.example.net. A 127.0.0.2", "2.0.0.127.zen.test. A 127.0.0.2")
	s.Add(t, "mx.example.net. A 127.0.0.3")
	expect(t, s, "mx.example.net", dns.TypeA, "NOERROR", "A 127.0.0.3", "A 127.0.0.2")
	expect(t, s, "broken.example", dns.TypeMX, "NOERROR", "MX 10 mx.example.net.")
	s.Fail("Broken.Example")
	s.Fail("broken.example.") // twice is once
	start := time.Now()
	for _, name := range []string{"broken.example", "sub.broken.example", "nothing.broken.example"} {
		expect(t, s, name, dns.TypeMX, "SERVFAIL")
		expect(t, s, name, dns.TypeA, "SERVFAIL")
	}
	// at once, not after a timeout (of unbound's or of the client's)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("12 SERVFAILs took %v: unbound should fail at once", d)
	}
	// the other records survive the reload, in the order added; other
	// names are still NXDOMAIN, those next to the failed one included
	expect(t, s, "mx.example.net", dns.TypeA, "NOERROR", "A 127.0.0.2", "A 127.0.0.3")
	expect(t, s, "2.0.0.127.zen.test", dns.TypeA, "NOERROR", "A 127.0.0.2")
	for _, name := range []string{"example", "a.example", "brokem.example", "brokenx.example", "nothing.example", "zzzzzzzzzzzz.example"} {
		expect(t, s, name, dns.TypeA, "NXDOMAIN")
	}
	// records added after Fail: answered, except for the failed names
	s.Add(t, "late.example. A 127.0.0.6", "broken.example. A 127.0.0.7", "late.broken.example. A 127.0.0.8")
	expect(t, s, "late.example", dns.TypeA, "NOERROR", "A 127.0.0.6")
	expect(t, s, "broken.example", dns.TypeA, "SERVFAIL")
	expect(t, s, "late.broken.example", dns.TypeA, "SERVFAIL")
	// a second failed name keeps the first
	s.Fail("2.0.0.127.zen.test")
	expect(t, s, "2.0.0.127.zen.test", dns.TypeA, "SERVFAIL")
	expect(t, s, "broken.example", dns.TypeA, "SERVFAIL")
	expect(t, s, "late.example", dns.TypeA, "NOERROR", "A 127.0.0.6")
}

// fatalTB records a Fatalf instead of failing the test.
type fatalTB struct {
	*testing.T
	fatal string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// addFatal runs s.Add and returns what it said to Fatalf, "" if nothing.
func addFatal(t *testing.T, s *Server, lines ...string) string {
	f := &fatalTB{T: t}
	done := make(chan struct{})
	go func() { defer close(done); s.Add(f, lines...) }()
	<-done
	return f.fatal
}

func TestAddRejectsABadRecord(t *testing.T) {
	s := Start(t)
	for _, line := range []string{"example.net. MX ten mx.example.net.", "example.net. BOGUS 1", ""} {
		if fatal := addFatal(t, s, "good.example. A 127.0.0.1", line); !strings.Contains(fatal, fmt.Sprintf("dnstest: record %q", line)) {
			t.Errorf("Add(%q): Fatalf %q, want it to name the record", line, fatal)
		}
	}
	expect(t, s, "good.example", dns.TypeA, "NXDOMAIN") // nothing of an Add refused
	// what unbound refuses, miekg/dns refuses first; were it not so, the
	// error would come from unbound-control
	if err := s.load([]record{{"bad.", "bad. A 127.0.0.1"}, {"bad.", "bad bad"}}); err == nil || !strings.Contains(err.Error(), "error parsing local-data") {
		t.Errorf("loading a record unbound cannot parse: %v, want unbound's complaint", err)
	}
}

// TestStartRetriesATakenPort: when another socket holds the port picked,
// UDP or TCP, unbound fails to bind it and Start tries another port.
func TestStartRetriesATakenPort(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	taken := []int{udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port}
	var tried []int
	pickPort = func() (int, error) {
		port, err := freePort()
		if len(tried) < len(taken) {
			port, err = taken[len(tried)], nil
		}
		if err == nil {
			tried = append(tried, port)
		}
		return port, err
	}
	defer func() { pickPort = freePort }()
	s := Start(t)
	// (a port freePort found may be taken again before unbound binds it)
	if len(tried) < 3 || tried[0] != taken[0] || tried[1] != taken[1] || s.Addr != fmt.Sprintf("127.0.0.1:%d", tried[len(tried)-1]) {
		t.Fatalf("tried %v, serving at %s: want the taken %v, then free ports, serving at the last one", tried, s.Addr, taken)
	}
	s.Add(t, "example.net. A 127.0.0.2")
	expect(t, s, "example.net", dns.TypeA, "NOERROR", "A 127.0.0.2")
}

// TestStopsWithTheTest: unbound is gone once the test that started it ends.
func TestStopsWithTheTest(t *testing.T) {
	var s *Server
	t.Run("server", func(t *testing.T) { s = Start(t) })
	if err := s.cmd.Process.Signal(syscall.Signal(0)); err == nil {
		t.Errorf("unbound (pid %d) still runs after its test", s.cmd.Process.Pid)
	}
	if _, err := net.Dial("tcp", s.Addr); err == nil {
		t.Errorf("something still listens at %s", s.Addr)
	}
}

// TestStartPort53: a server for resolvers that only take an address
// answers on port 53 of a loopback address of its own.
func TestStartPort53(t *testing.T) {
	s := StartPort53(t)
	ip := net.ParseIP(s.IP())
	if ip == nil || !ip.IsLoopback() || s.IP() == "127.0.0.1" || s.Addr != s.IP()+":53" {
		t.Fatalf("serving at %s (ip %s): want port 53 of a loopback address other than 127.0.0.1", s.Addr, s.IP())
	}
	s.Add(t, "2.0.0.127.in-addr.arpa. PTR host.example.net.")
	expect(t, s, "2.0.0.127.in-addr.arpa", dns.TypePTR, "NOERROR", "PTR host.example.net.")
}
