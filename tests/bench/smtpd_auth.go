package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gw/lib/dns/dnstest"
)

// smtpdAuthBench measures gw-smtpd's acceptance with SPF, DKIM, ARC and
// DMARC checked at every message against the same gateway without, in
// the same run: smtp-source's messages (from bench@example.org, unsigned:
// DKIM finds no signature, SPF aligns, DMARC passes) through two
// gw-smtpd + gw-queued + gw-send sides to smtp-sink. DNS is unbound on
// loopback, caching, as a gateway's local resolver. The CPU of one DKIM
// verification is in the auth section.
func smtpdAuthBench(work string) {
	if *smtpdMessages <= 0 {
		return
	}
	fmt.Printf("\ngw-smtpd acceptance with message authentication on and off, smtp-source, %d messages a figure\n", *smtpdMessages)
	for _, p := range []string{"smtp-source", "smtp-sink"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  %s is not installed (make peers): skipped\n", p)
			return
		}
	}
	// unbound runs under a testing.B, which only testing.Benchmark gives.
	testing.Benchmark(func(b *testing.B) {
		if b.N > 1 {
			b.SkipNow()
		}
		srv := dnstest.Start(b)
		srv.Add(b, `example.org. TXT "v=spf1 ip4:127.0.0.0/8 -all"`, `_dmarc.example.org. TXT "v=DMARC1; p=reject"`)
		dir := filepath.Join(work, "smtpd-auth")
		check(os.MkdirAll(dir, 0o755))
		defer os.RemoveAll(dir)
		sink, stopSink, err := startSink(dir, "sink")
		if err != nil {
			fmt.Println("  smtp-sink:", err)
			return
		}
		defer stopSink()
		off, err := startGWWith(filepath.Join(dir, "off"), sink, nil, []string{"GW_DNS=" + srv.Addr})
		if err != nil {
			fmt.Println("  gw:", err)
			return
		}
		defer off.stop()
		on, err := startGWWith(filepath.Join(dir, "on"), sink,
			map[string]string{"spfpolicy": "tag\n", "dmarcpolicy": "enforce\n"}, []string{"GW_DNS=" + srv.Addr})
		if err != nil {
			fmt.Println("  gw:", err)
			return
		}
		defer on.stop()
		fmt.Printf("%5s %5s %10s %10s %7s %12s %12s\n", "size", "sess", "off msg/s", "on msg/s", "on/off", "off CPU s", "on CPU s")
		for _, sess := range []int{1, 10} {
			size := 10 << 10
			f, err1 := measureSide(off, size, sess, *smtpdMessages)
			g, err2 := measureSide(on, size, sess, *smtpdMessages)
			if err1 != nil || err2 != nil {
				fmt.Println("  failed:", err1, err2)
				continue
			}
			fmt.Printf("%4dK %5d %10.0f %10.0f %6.0f%% %12.3f %12.3f\n", size>>10, sess, f.rate, g.rate, 100*g.rate/f.rate, f.cpuPer1000, g.cpuPer1000)
		}
		fmt.Println("  (CPU: seconds of the whole side a thousand messages; the issue asks on/off >= 70%)")
	})
}
