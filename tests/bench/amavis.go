package main

// The seeds' scanned path: Postfix → amavisd-new (clamd, and SpamAssassin
// loaded in amavisd's own processes) → Postfix's reinjection smtpd →
// smtp-sink, from Debian's packages with a private configuration. Postfix
// scans after its queue: its clients are answered before amavisd sees the
// message, so the rate of this path is counted until the last message has
// left for the sink, not until the last client's reply.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gw/tests/internal/amavistest"
)

// amavisPath is one run of the pipeline: clamd alone (spam false) or clamd
// and SpamAssassin, servers amavisd children.
func amavisPath(clamdSock, sink string, n, sess, servers int, spam bool, msg []byte, scannerCPU func() time.Duration) (f pathFigure, amavisMs float64, err error) {
	pdir, _ := os.MkdirTemp("", "gw-bench-postfix-amavis-")
	os.Chmod(pdir, 0o755)
	defer os.RemoveAll(pdir)
	filterAddr, reinject := freePort(), freePort()
	am, err := amavistest.Start(filepath.Join(pdir, "amavis"), amavistest.Options{
		Addr: filterAddr, NextHop: reinject, ClamdSock: clamdSock, SpamAssassin: spam, Servers: servers})
	if err != nil {
		return f, 0, err
	}
	defer am.Stop()
	// As the seeds' Postfix: every message through smtp-amavis to
	// amavisd, as many deliveries at once as amavisd has children; what
	// comes back on the reinjection smtpd is not filtered again.
	master := strings.Join([]string{
		fmt.Sprintf("smtp-amavis unix - - n - %d smtp", servers),
		"  -o smtp_data_done_timeout=1200",
		"  -o smtp_send_xforward_command=yes",
		"  -o smtp_dns_support_level=disabled",
		"  -o max_use=20",
		reinject + " inet n - n - - smtpd",
		"  -o content_filter=",
		"  -o smtpd_client_restrictions=",
		"  -o smtpd_helo_restrictions=",
		"  -o smtpd_sender_restrictions=",
		"  -o smtpd_relay_restrictions=permit_mynetworks,reject",
		"  -o smtpd_recipient_restrictions=permit_mynetworks,reject",
		"  -o mynetworks=127.0.0.0/8",
		"  -o smtpd_authorized_xforward_hosts=127.0.0.0/8",
		"  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks",
		"",
	}, "\n")
	s, err := startPostfixMaster(pdir, sink, master, "content_filter = smtp-amavis:["+strings.Replace(filterAddr, ":", "]:", 1))
	if err != nil {
		return f, 0, err
	}
	defer s.stop()
	// amavisd's children end after a number of messages: what they used
	// is in their parent's reaped-children times.
	amavisCPU := func() time.Duration {
		var t time.Duration
		for _, pid := range descendants(am.Cmd.Process.Pid) {
			u, st, _, _ := procTimes(pid)
			t += u + st
		}
		_, _, cu, cs := procTimes(am.Cmd.Process.Pid)
		return t + cu + cs
	}
	// The pipeline's own CPU is Postfix's and amavisd's: amavisd is the
	// glue gw-scan replaces (with SpamAssassin on, its rules run inside
	// amavisd too; amavisd's share is returned apart).
	own := func() time.Duration { return sideCPU(s) + amavisCPU() }
	a0 := amavisCPU()
	f, err = measureCPU(s, own, true, msg, n, sess, 0, scannerCPU)
	return f, float64((amavisCPU() - a0).Microseconds()) / 1000 / float64(n), err
}
