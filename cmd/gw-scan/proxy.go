package main

import (
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gw/lib/control"
	"gw/lib/logline"
	"gw/lib/metrics"
	"gw/lib/program"
	"gw/lib/scan"
	"gw/lib/trustpath"
)

// proxy serves SMTP on --listen and relays scanned mail to --next-hop.
func proxy(c *config) error {
	log := logline.Stderr
	// The proxy is a daemon: its scanning policy must be root's or its
	// own user's alone (trustpath), as the listeners' is.
	if err := trustpath.Dir("control directory", c.controlDir); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	dir := control.Dir(c.controlDir)
	s, err := scan.Load(dir, log)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	// A daemon scans message after message: clamd's connections stay
	// open between them (the wrapper, one message a process, opens one).
	if s.Clamd != nil {
		s.Clamd.Sessions = true
	}
	databytes, err := dir.Int("databytes", 0)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	if err := metrics.Start("gw-scan", c.metrics, log); err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to listen on %s: %v", c.listen, err)
	}
	log.Info("listening", "addr", ln.Addr(), "next_hop", c.nextHop)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		log.Info("shutdown")
		ln.Close()
	}()
	p := &scan.Proxy{Scanner: s, Quarantine: c.quarantineDir(), NextHop: c.nextHop, Timeout: 5 * time.Minute, MaxBytes: databytes}
	if err := p.Serve(ln); err != nil {
		return program.Fail(program.ExitTemporary, "serving: %v", err)
	}
	return nil
}
