package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"gw/lib/dns/dnstest"
)

func TestResolverAgainstLoopbackServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "example.net. MX 10 mx1.example.net.", "example.net. MX 10 mx2.example.net.",
		"example.net. MX 20 backup.example.net.", "mx1.example.net. A 127.0.0.2",
		"2.0.0.127.zen.example. A 127.0.0.2", "2.0.0.127.zen.example. TXT \"listed\"",
		"nullmx.example. MX 0 .")
	srv.Fail("broken.example.")
	r := New(srv.Addr)
	ctx := context.Background()
	mx, err := r.LookupMX(ctx, "example.net")
	if err != nil || len(mx) != 3 || mx[2].Host != "backup.example.net." {
		t.Fatalf("LookupMX = %v, %v", mx, err)
	}
	if ips, err := r.LookupHost(ctx, "mx1.example.net"); err != nil || len(ips) != 1 || ips[0] != "127.0.0.2" {
		t.Errorf("LookupHost = %v, %v", ips, err)
	}
	if txt, err := r.LookupTXT(ctx, "2.0.0.127.zen.example"); err != nil || len(txt) != 1 || txt[0] != "listed" {
		t.Errorf("LookupTXT = %v, %v", txt, err)
	}
	if mx, err := r.LookupMX(ctx, "nullmx.example"); err != nil || len(mx) != 1 || mx[0].Host != "." {
		t.Errorf("null MX: %v, %v", mx, err)
	}
	if _, err := r.LookupHost(ctx, "nowhere.example"); !NotFound(err) {
		t.Errorf("unknown name: %v, want not found", err)
	}
	if _, err := r.LookupMX(ctx, "broken.example"); !Temporary(err) || NotFound(err) {
		t.Errorf("SERVFAIL: %v, want temporary", err)
	}
}

// TestExchange: a raw query gets unbound's answer as DNS gave it; a
// server that never answers costs no more than the caller's deadline.
func TestExchange(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "2.0.0.127.in-addr.arpa. PTR Mixed.Case.example.")
	m := new(mdns.Msg)
	m.SetQuestion("2.0.0.127.in-addr.arpa.", mdns.TypePTR)
	in, err := New(srv.Addr).Exchange(context.Background(), m)
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*mdns.PTR).Ptr != "Mixed.Case.example." {
		t.Fatalf("Exchange = %v, %v", in, err)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if in, err := New(pc.LocalAddr().String()).Exchange(ctx, m); err == nil {
		t.Errorf("a silent server answered %v", in)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a silent server held the query %v past a 300ms deadline", took)
	}
}

// TestExchangeTriesTheNextServer: without GW_DNS the servers of
// resolv.conf are asked in turn, so a first server that never answers
// costs one try, not the answer.
func TestExchangeTriesTheNextServer(t *testing.T) {
	srv := dnstest.StartPort53(t)
	srv.Add(t, "2.0.0.127.in-addr.arpa. PTR host.example.")
	var silent net.PacketConn
	for silent == nil {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.%d.%d.%d:53", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254)))
		if err == nil {
			silent = pc
		}
	}
	defer silent.Close()
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	host, _, _ := net.SplitHostPort(silent.LocalAddr().String())
	if err := os.WriteFile(conf, []byte("nameserver "+host+"\nnameserver "+srv.IP()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(saved string) { resolvConf = saved }(resolvConf)
	resolvConf = conf
	m := new(mdns.Msg)
	m.SetQuestion("2.0.0.127.in-addr.arpa.", mdns.TypePTR)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := New("").Exchange(ctx, m)
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*mdns.PTR).Ptr != "host.example." {
		t.Fatalf("Exchange = %v, %v; want the second server's answer", in, err)
	}
}
