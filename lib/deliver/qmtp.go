package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"gw/lib/dsn"
	"gw/lib/qmtp"
	"gw/lib/route"
)

// QMTP delivery pipelines: every job for the same host shares the
// process's connections to it (qmtpConns), sending its package at once
// and waiting only for its own responses. A connection carries up to
// maxQMTPInFlight packages waiting for answers before another is opened,
// and one idle for maxQMTPIdle is closed.
const (
	maxQMTPInFlight = QMTPInFlight
	maxQMTPIdle     = time.Minute // well under gw-qmtpd's timeoutqmtpd (1200 s)
)

// QMTPInFlight is how many packages one QMTP connection carries waiting
// for their responses: gw-send counts a connection in its overall limit
// for each QMTPInFlight deliveries to a QMTP destination.
const QMTPInFlight = 64

type qmtpPool struct {
	mu      sync.Mutex
	conns   map[string][]*qmtp.Conn
	dialing map[string]*qmtpDial // the dial under way to a host
}

// qmtpDial is a dial under way: done is closed when it ends, err is then
// its failure.
type qmtpDial struct {
	done chan struct{}
	err  error
}

var qmtpConns = &qmtpPool{conns: map[string][]*qmtp.Conn{}, dialing: map[string]*qmtpDial{}}

// get returns a live connection to addr with room for another package,
// dialling one when there is none. One dial to a host at a time: the jobs
// that find no room meanwhile wait for it and share the new connection,
// rather than each opening one of their own (a burst of jobs would
// otherwise open as many connections as there are jobs, and meet the
// server's per-address limit); when it fails, they fail with it rather
// than each waiting for a connect timeout of its own.
func (p *qmtpPool) get(ctx context.Context, addr string, cfg Config) (*qmtp.Conn, error) {
	for {
		p.mu.Lock()
		var best *qmtp.Conn
		bestN := maxQMTPInFlight
		live := p.conns[addr][:0]
		for _, q := range p.conns[addr] {
			n, idle := q.InFlight()
			if q.Err() != nil || n == 0 && time.Since(idle) > maxQMTPIdle {
				q.Close()
				continue
			}
			live = append(live, q)
			if n < bestN {
				best, bestN = q, n
			}
		}
		p.conns[addr] = live
		if best != nil {
			p.mu.Unlock()
			return best, nil
		}
		if d := p.dialing[addr]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil && !errors.Is(d.err, context.Canceled) {
					return nil, d.err // not the dialler's own job ending
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		d := &qmtpDial{done: make(chan struct{})}
		p.dialing[addr] = d
		p.mu.Unlock()
		q, err := qmtp.Dial(ctx, addr, cfg.ConnectTimeout, cfg.Timeout)
		p.mu.Lock()
		delete(p.dialing, addr)
		d.err = err
		if err == nil {
			p.conns[addr] = append(p.conns[addr], q)
		}
		p.mu.Unlock()
		close(d.done)
		return q, err
	}
}

// DialQMTP returns a QMTP session with h. Its messages go out on a
// connection shared with every other job for h, pipelined; Close leaves
// the connection to the others.
func DialQMTP(ctx context.Context, h route.Host, cfg Config) (Session, error) {
	addr := net.JoinHostPort(h.Addr.String(), strconv.Itoa(h.Port))
	q, err := qmtpConns.get(ctx, addr, cfg)
	if err != nil {
		return nil, &ConnError{Host: h.String(), Err: err}
	}
	return &qmtpSession{ctx: ctx, q: q, host: h.String()}, nil
}

type qmtpSession struct {
	ctx  context.Context
	q    *qmtp.Conn
	host string
}

// Start refuses a sender no SMTP path can carry: QMTP carries it raw, but
// the server hands it on to SMTP hops, and gw writes nothing that it
// would not write itself (mailbox.Check, the one definition).
// Start: QMTP has no parameters, and the DSN request stays behind
// (OffersDSN is false, so gw-send honours it itself).
func (s *qmtpSession) Start(sender string, size int64, utf8 bool, _ dsn.Mail) (Delivery, error) {
	if err := Unwritable(sender, true); err != nil {
		return nil, err
	}
	return &qmtpDelivery{s: s, sender: sender, size: size}, nil
}

func (s *qmtpSession) Reusable() bool  { return s.q.Err() == nil }
func (s *qmtpSession) TLS() bool       { return false }
func (s *qmtpSession) OffersDSN() bool { return false }
func (s *qmtpSession) Close() error    { return nil }

// Kill drops the shared connection: every package waiting on it fails
// temporarily.
func (s *qmtpSession) Kill() { s.q.Close() }

type qmtpDelivery struct {
	s       *qmtpSession
	sender  string
	size    int64
	rcpts   []string // the recipients that go in the package
	outcome []error  // per AddRcpt call: its refusal by gw, or nil
	sentAs  []int    // per AddRcpt call: its index in rcpts, or -1
	noData  bool     // every recipient refused: no package was sent
	p       *qmtp.Pending
	// okReplies: per AddRcpt call, the server's K response text, kept
	// for the log (the next hop's own id for the message).
	okReplies []string
}

// Replies returns, per AddRcpt call, the response that took the message
// for that recipient ("K" and its text), or "" where none did.
func (d *qmtpDelivery) Replies() []string { return d.okReplies }

// AddRcpt notes the recipient (QMTP answers for each after the message),
// or refuses it at once when gw would not queue it itself.
func (d *qmtpDelivery) AddRcpt(to string, _ dsn.Rcpt) error {
	if err := Unwritable(to, false); err != nil {
		d.outcome, d.sentAs = append(d.outcome, err), append(d.sentAs, -1)
		return err
	}
	d.outcome, d.sentAs = append(d.outcome, nil), append(d.sentAs, len(d.rcpts))
	d.rcpts = append(d.rcpts, to)
	return nil
}

// Body sends the whole package. A read error from r or a short message
// breaks the connection before the package is complete, so the server
// queues nothing of it (and the other packages waiting on the
// connection are retried).
func (d *qmtpDelivery) Body(r io.Reader) error {
	if len(d.rcpts) == 0 {
		d.noData = true // Commit reports the refusals
		return nil
	}
	p, err := d.s.q.Send(d.sender, d.rcpts, d.size, r)
	if err != nil {
		return &ConnError{Host: d.s.host, Err: err}
	}
	d.p = p
	return nil
}

// Commit waits for the package's responses: K delivered, Z deferred, D
// failed, each as a Reply with a 451 or 554 code standing for it.
func (d *qmtpDelivery) Commit() ([]error, error) {
	if d.noData {
		return d.outcome, nil
	}
	if d.p == nil {
		return nil, &ConnError{Host: d.s.host, Err: errors.New("no package sent")}
	}
	resp, err := d.p.Wait(d.s.ctx)
	if err != nil {
		return nil, &ConnError{Host: d.s.host, Err: err}
	}
	if len(resp) != len(d.rcpts) {
		return nil, &ConnError{Host: d.s.host, Err: fmt.Errorf("%d responses for %d recipients", len(resp), len(d.rcpts))}
	}
	out := make([]error, len(d.outcome))
	d.okReplies = make([]string, len(d.outcome))
	for i, k := range d.sentAs {
		if k < 0 {
			out[i] = d.outcome[i]
			continue
		}
		switch r := resp[k]; r.Code {
		case 'K':
			d.okReplies[i] = strings.TrimSpace("K " + oneLine(r.Text))
		case 'D':
			out[i] = &Reply{Code: 554, Text: oneLine(r.Text), Host: d.s.host}
		default:
			out[i] = &Reply{Code: 451, Text: oneLine(r.Text), Host: d.s.host}
		}
	}
	return out, nil
}

// DataSent reports whether the whole package went out: from then on the
// server may have queued it.
func (d *qmtpDelivery) DataSent() bool { return d.p != nil }

// Abort before Body sends nothing; after it the package is on the wire
// and its responses are simply not waited for.
func (d *qmtpDelivery) Abort() {}
