package send

import (
	"context"
	"time"

	"gw/lib/deliver"
	"gw/lib/route"
)

// Transport is how the scheduler reaches a server of one protocol: dial a
// host, then deliver and close through the deliver.Session it returns.
// It is the scheduler's only way onto the network, so that one loop
// (Sender.transact) serves SMTP, LMTP and QMTP alike, and a test can stand
// a scripted transport in its place.
type Transport interface {
	// Dial opens a session with h. An error is about h (refused, a 5xx
	// greeting, a broken server): the scheduler tries the next host.
	Dial(ctx context.Context, h route.Host, o DialOptions) (deliver.Session, error)
	// Pooled reports whether an idle session waits in gw-send's pool for
	// the next message to its destination. QMTP's do not: lib/deliver
	// shares its connections between all jobs for a host and pipelines
	// their packages.
	Pooled() bool
}

// DialOptions are what a session needs from gw-send's configuration.
type DialOptions struct {
	Helo                    string
	ConnectTimeout, Timeout time.Duration
	TLS                     bool                        // try STARTTLS when offered
	TLSFailed               func(f *deliver.TLSFailure) // told of every TLS failure
	// Policy is the host's TLS policy (lib/send's tlsPolicies.forHost);
	// nil is may, or none without TLS. QMTP has none.
	Policy *deliver.TLSPolicy
}

// smtpTransport is SMTP, or LMTP, through lib/deliver.
type smtpTransport struct{ lmtp bool }

func (t smtpTransport) Dial(ctx context.Context, h route.Host, o DialOptions) (deliver.Session, error) {
	return deliver.Dial(ctx, h, deliver.Config{Helo: o.Helo, ConnectTimeout: o.ConnectTimeout, Timeout: o.Timeout,
		NoTLS: !o.TLS, LMTP: t.lmtp, TLSFailed: o.TLSFailed, Policy: o.Policy})
}

func (smtpTransport) Pooled() bool { return true }

// qmtpTransport is QMTP through lib/deliver's shared, pipelined connections.
type qmtpTransport struct{}

func (qmtpTransport) Dial(ctx context.Context, h route.Host, o DialOptions) (deliver.Session, error) {
	return deliver.DialQMTP(ctx, h, deliver.Config{ConnectTimeout: o.ConnectTimeout, Timeout: o.Timeout})
}

func (qmtpTransport) Pooled() bool { return false }

// realTransports are the transports gw-send runs with.
func realTransports() map[route.Proto]Transport {
	return map[route.Proto]Transport{route.SMTP: smtpTransport{}, route.LMTP: smtpTransport{lmtp: true},
		route.QMTP: qmtpTransport{}}
}
