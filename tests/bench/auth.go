package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"gw/lib/authcheck"
	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

// authBench prints the CPU one message costs the gateway for DKIM
// signing (RSA-2048 and Ed25519) and for the whole end-of-message check
// of a signed inbound message (DKIM, ARC, DMARC, SPF, the
// Authentication-Results field) with DNS answered by unbound on loopback
// and cached, as a gateway with a local resolver sees it.
func authBench(work string) {
	fmt.Printf("\nMessage authentication, CPU a message (one core)\n")
	// the queue bench's 4 KB message, from an author in the test domain
	msg := dkim.ToCRLF(bytes.Replace(message(4096), []byte("bench@example.org"), []byte("a@bench.test"), 1))
	for _, alg := range []string{dkim.AlgRSA, dkim.AlgEd25519} {
		key, err := dkim.GenerateKey(alg)
		check(err)
		cpu, n := cpuPerOp(func() {
			_, err := dkim.SignWith(msg, "bench.test", "s", key)
			check(err)
		})
		fmt.Printf("  sign %-8s %8.0f µs CPU a message (%d messages)\n", alg, cpu, n)
	}
	// The inbound check needs a DNS server: dnstest runs unbound under a
	// testing.B, which only testing.Benchmark provides.
	testing.Benchmark(func(b *testing.B) {
		if b.N > 1 {
			b.SkipNow() // set up once, measured with cpuPerOp below
		}
		inbound(b, work, msg)
	})
}

func inbound(b *testing.B, work string, msg []byte) {
	srv := dnstest.Start(b)
	key, err := dkim.GenerateKey(dkim.AlgRSA)
	check(err)
	rec, _ := dkim.PublicRecord(key)
	srv.Add(b, dkimpytest.TXT(dkim.KeyName("s", "bench.test"), rec),
		`bench.test. TXT "v=spf1 ip4:192.0.2.10 -all"`, `_dmarc.bench.test. TXT "v=DMARC1; p=reject"`)
	sig, err := dkim.SignWith(msg, "bench.test", "s", key)
	check(err)
	signed := append(sig, msg...)
	control := filepath.Join(work, "auth-control")
	check(os.MkdirAll(control, 0o755))
	defer os.RemoveAll(control)
	for name, v := range map[string]string{"me": "mx.gw.test", "spfpolicy": "tag", "dmarcpolicy": "enforce"} {
		check(os.WriteFile(filepath.Join(control, name), []byte(v+"\n"), 0o644))
	}
	cfg, err := authcheck.Load(control)
	check(err)
	c := authcheck.New(cfg, dns.New(srv.Addr))
	face, _ := cfg.ForClient(func(string) (string, bool) { return "", false })
	ctx := context.Background()
	cpu, n := cpuPerOp(func() {
		tx := &authcheck.Transaction{Face: face, Client: netip.MustParseAddr("192.0.2.10"), Helo: "mail.bench.test", Sender: "a@bench.test"}
		c.Mail(ctx, tx)
		out, err := c.End(ctx, tx, signed)
		check(err)
		if out.DMARC == nil || out.DMARC.Value != "pass" {
			check(fmt.Errorf("bench message did not pass DMARC: %+v", out.DMARC))
		}
	})
	fmt.Printf("  verify SPF+DKIM+DMARC+ARC %6.0f µs CPU a message (%d messages; unbound's CPU not counted)\n", cpu, n)
}

// cpuPerOp runs op for the bench's duration on one goroutine and returns
// this process's CPU (user+system) an operation, in microseconds.
func cpuPerOp(op func()) (float64, int) {
	before := rusage()
	n := 0
	for end := time.Now().Add(*duration); time.Now().Before(end); n++ {
		op()
	}
	return float64(rusage()-before) / float64(n) / float64(time.Microsecond), n
}

func rusage() time.Duration {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
