package tcpserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"gw/lib/logline"
	"gw/lib/privilege"
)

// Bind listens on every address and only then, if user is set, gives up
// root: the order a listener on port 25 needs. The drop is checked
// (lib/privilege) before any client is served.
func Bind(addrs []string, user string, log *logline.Logger) ([]net.Listener, error) {
	var lns []net.Listener
	// No TCP keep-alive on accepted connections: every read and write of
	// a session has its own deadline, which ends a dead peer's session
	// sooner, and turning keep-alive on costs four setsockopt calls a
	// connection.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, a := range addrs {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("unable to listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
		log.Info("listening", "addr", ln.Addr())
	}
	if user != "" {
		if err := privilege.Drop(user); err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("unable to drop privileges: %w", err)
		}
	}
	return lns, nil
}

// ServeAll runs serve on every listener until SIGTERM or SIGINT closes
// them; serve returns once its sessions are done. SIGHUP calls reload,
// when there is one.
func ServeAll(lns []net.Listener, serve func(net.Listener) error, reload func(), log *logline.Logger) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	go func() {
		for s := range sig {
			if s == syscall.SIGHUP {
				if reload != nil {
					reload()
				}
				continue
			}
			log.Info("shutdown")
			closeAll(lns)
			return
		}
	}()
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errs <- serve(ln) }()
	}
	var first error
	for range lns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}
