// Package dns is gw's resolver: Go's own DNS client, sent to the servers
// of /etc/resolv.conf or to one server named by GW_DNS (host:port). Tests
// point GW_DNS at a server they run on loopback; a sysadmin may point it
// at a local caching resolver.
package dns

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Resolver answers the queries gw makes: MX, A/AAAA, TXT through Go's
// resolver, and any query as a raw message through Exchange.
type Resolver struct {
	*net.Resolver
	server string // host:port; "" = the servers of /etc/resolv.conf
}

// New returns a resolver that asks server (host:port), or the system's
// servers when server is empty.
func New(server string) *Resolver {
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		d := net.Dialer{Timeout: 5 * time.Second}
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		}
	}
	return &Resolver{Resolver: r, server: server}
}

// FromEnv returns the resolver GW_DNS names, or the system's.
func FromEnv() *Resolver { return New(os.Getenv("GW_DNS")) }

// NotFound reports whether err says the name or the record does not exist
// (a permanent answer), as opposed to a failure to get an answer.
func NotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Temporary reports whether err is a failure to get an answer that may
// go away: timeout, SERVFAIL, refused, unreachable server.
func Temporary(err error) bool {
	return err != nil && !NotFound(err)
}
