package dns

import (
	"context"
	"errors"
	"net"
	"time"

	mdns "github.com/miekg/dns"
)

// Exchange sends the query m to the resolver's server (GW_DNS) or to the
// servers of /etc/resolv.conf in turn, and returns the first answer that
// is not SERVFAIL or REFUSED (those may be one server's trouble); over
// TCP again when the UDP answer was truncated. ctx bounds the whole
// exchange.
//
// It exists beside Go's resolver for the answers that resolver will not
// give as DNS gave them: Go's reverse lookups read /etc/hosts first and
// drop names that are not host names, where tcpserver asks DNS and
// reports whatever name it answers.
func (r *Resolver) Exchange(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error) {
	servers := r.servers()
	var last *mdns.Msg
	var err error
	for round := 0; round < attempts; round++ {
		for _, server := range servers {
			if ctx.Err() != nil {
				return nil, errors.Join(ctx.Err(), err)
			}
			var in *mdns.Msg
			in, err = exchange(ctx, m, server)
			if err != nil {
				continue
			}
			if in.Rcode != mdns.RcodeServerFailure && in.Rcode != mdns.RcodeRefused {
				return in, nil
			}
			last = in
		}
	}
	if last != nil {
		return last, nil
	}
	return nil, err
}

// attempts is how many times each server is asked, as resolv.conf's
// default "attempts:2".
const attempts = 2

// tryTimeout bounds one question to one server, so that a silent server
// leaves time to ask the next.
const tryTimeout = 2 * time.Second

func exchange(ctx context.Context, m *mdns.Msg, server string) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, tryTimeout)
	defer cancel()
	c := &mdns.Client{Net: "udp", Timeout: tryTimeout}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	return in, err
}

// servers returns the servers to ask: GW_DNS's, or /etc/resolv.conf's
// (read at each query, as a resolver that outlives changes to it must),
// or the local one, as every stub resolver assumes when that file names
// none.
func (r *Resolver) servers() []string {
	if r.server != "" {
		return []string{r.server}
	}
	var servers []string
	if conf, err := mdns.ClientConfigFromFile(resolvConf); err == nil {
		for _, s := range conf.Servers {
			servers = append(servers, net.JoinHostPort(s, conf.Port))
		}
	}
	if len(servers) == 0 {
		servers = []string{"127.0.0.1:53"}
	}
	return servers
}

// resolvConf is the system's resolver configuration (a variable for the
// tests).
var resolvConf = "/etc/resolv.conf"

// Servers lists the servers Exchange asks, host:port: a caller that
// believes what they say (the AD bit of a validating resolver) must
// know whom it believes.
func (r *Resolver) Servers() []string { return r.servers() }
