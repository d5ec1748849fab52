//go:build gwpprof

package main

// Built with -tags gwpprof only, for profiling gw-smtpd under load: with
// GW_PPROF=127.0.0.1:PORT in its environment it serves net/http/pprof on
// that loopback address (go tool pprof http://ADDR/debug/pprof/profile).
// A production build has none of this.

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("GW_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "gw-smtpd: GW_PPROF=%s: profiles are served on a loopback address only\n", addr)
		os.Exit(111)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gw-smtpd: GW_PPROF: %v\n", err)
		os.Exit(111)
	}
	go http.Serve(l, nil)
}
