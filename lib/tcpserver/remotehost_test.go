package tcpserver

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/acl"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
	"gw/lib/logline"
)

// TestDotted: names reach TCPREMOTEHOST lowered, with every byte but
// a-z, 0-9, '-' and '_' written as \ooo, as tcpserver writes them.
func TestDotted(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Mail.Example.NET.", "mail.example.net"},
		{"under_score.x-y.example.", "under_score.x-y.example"},
		{`a\032b.example.`, `a\040b.example`}, // a space
		{`a\.b.example.`, `a\056b.example`},   // a dot inside a label
		{`semi\;colon\255.example.`, `semi\073colon\377.example`},
		{".", "."},
	} {
		if got, ok := dotted(c.in); !ok || got != c.want {
			t.Errorf("dotted(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

// reverseZone is DNS for the lookups below: a client whose name points
// back, one whose name points elsewhere, one with no PTR, one whose
// reverse zone fails, and an IPv6 client.
func reverseZone(t *testing.T) *dnstest.Server {
	srv := dnstest.Start(t)
	srv.Add(t,
		"2.0.0.127.in-addr.arpa. PTR Good.GW.test.", "good.gw.test. A 127.0.0.2",
		"3.0.0.127.in-addr.arpa. PTR liar.gw.test.", "liar.gw.test. A 127.0.0.99",
		"4.0.0.127.in-addr.arpa. PTR 127.0.0.4.", // a name that reads as an address
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR six.gw.test.",
		"six.gw.test. AAAA ::1")
	srv.Fail("6.0.0.127.in-addr.arpa.")
	return srv
}

func TestHostLookup(t *testing.T) {
	srv := reverseZone(t)
	for _, c := range []struct {
		ip       string
		paranoid bool
		want     string // "" = no name
	}{
		{"127.0.0.2", false, "good.gw.test"},
		{"127.0.0.2", true, "good.gw.test"},
		{"127.0.0.3", false, "liar.gw.test"},
		{"127.0.0.3", true, ""},
		{"127.0.0.4", false, "127.0.0.4"},
		{"127.0.0.4", true, ""}, // no A record: the name is not taken for an address
		{"127.0.0.5", false, ""},
		{"127.0.0.6", false, ""}, // SERVFAIL
		{"::ffff:127.0.0.2", true, "good.gw.test"},
		{"::1", true, "six.gw.test"},
	} {
		h := &HostLookup{Resolver: dns.New(srv.Addr), Paranoid: c.paranoid}
		got, ok := h.Name(netip.MustParseAddr(c.ip))
		if ok != (c.want != "") || got != c.want {
			t.Errorf("%s paranoid=%v: %q, %v; want %q", c.ip, c.paranoid, got, ok, c.want)
		}
	}
}

// silentDNS is a UDP socket on loopback that reads queries and never
// answers: a resolver that is down without saying so.
func silentDNS(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// TestHostLookupTimeout: a resolver that never answers costs a client
// its name after the timeout, and costs the other clients nothing more:
// five clients at once are all served one timeout later, not five.
func TestHostLookupTimeout(t *testing.T) {
	const timeout = 700 * time.Millisecond
	hosts := &HostLookup{Resolver: dns.New(silentDNS(t)), Timeout: timeout}
	addr := greeter(t, &Listener{Hosts: hosts})
	start := time.Now()
	var wg sync.WaitGroup
	got := make([]string, 5)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = greeting(t, addr, "127.0.0.1")
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, g := range got {
		if g != "hello ip=127.0.0.1 host=\n" {
			t.Errorf("client %d: %q, want a greeting without a host", i, g)
		}
	}
	if took < timeout || took > 3*timeout {
		t.Errorf("5 clients took %v with a %v timeout: want one timeout", took, timeout)
	}
}

// TestHostRules: with names looked up, =host and =.domain rules decide;
// without (-H, Hosts nil) they never match.
func TestHostRules(t *testing.T) {
	srv := reverseZone(t)
	srv.Add(t, "7.0.0.127.in-addr.arpa. PTR mx.Spam.test.")
	db := filepath.Join(t.TempDir(), "rules.db")
	rules := "=good.gw.test:deny\n=.spam.test:deny\n:allow\n"
	if err := acl.Build(strings.NewReader(rules), db, db+".tmp", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		hosts *HostLookup
		from  string
		want  string
	}{
		{&HostLookup{Resolver: dns.New(srv.Addr)}, "127.0.0.2", ""},
		{&HostLookup{Resolver: dns.New(srv.Addr)}, "127.0.0.7", ""},
		{&HostLookup{Resolver: dns.New(srv.Addr)}, "127.0.0.3", "hello ip=127.0.0.3 host=liar.gw.test\n"},
		{nil, "127.0.0.2", "hello ip=127.0.0.2 host=\n"},
		{nil, "127.0.0.7", "hello ip=127.0.0.7 host=\n"},
	} {
		addr := greeter(t, &Listener{ACL: db, Hosts: c.hosts})
		if got := greeting(t, addr, c.from); got != c.want {
			t.Errorf("from %s, lookups %v: %q, want %q", c.from, c.hosts != nil, got, c.want)
		}
	}
}

// greeter runs l with a session that greets the client with what its
// environment says of it.
func greeter(t *testing.T, l *Listener) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Log = logline.New(io.Discard)
	l.Session = func(c net.Conn, lookup func(string) (string, bool)) {
		defer c.Close()
		ip, _ := lookup("TCPREMOTEIP")
		host, _ := lookup("TCPREMOTEHOST")
		io.WriteString(c, "hello ip="+ip+" host="+host+"\n")
	}
	done := make(chan struct{})
	go func() { l.Serve(ln, time.Second); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// greeting connects to addr from the loopback address from and returns
// the first line it reads, "" if the server closed without one.
func greeting(t *testing.T, addr, from string) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}
