package send

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gw/lib/deliver"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
)

// job is one message's due recipients of one domain, or (finishing) the
// bounce-and-remove of a finished message.
type job struct {
	id     queue.ID
	domain string
	route  route.Route
	dest   string
	rcpts  []int
	ctx    context.Context

	started   bool // counted in the destinations table
	expired   bool // fail without trying: the destination is down and the message too old
	finishing bool

	// Results, written by the job's goroutine before it reports.
	reachable bool
	lastErr   string
}

// outcome is one recipient's result.
type outcome struct {
	err  error  // nil: delivered
	host string // who answered, if anyone
}

// deliver runs job j: route, connect, transact, record.
func (s *Sender) deliver(j *job) {
	m, err := s.r.Message(j.id)
	if err != nil {
		j.reachable = true
		return
	}
	cfg := s.config()
	start := s.now()
	dying := start.Sub(m.Arrival) > cfg.Lifetime
	out := make([]outcome, len(j.rcpts))
	if j.expired {
		reason := j.lastErr // set by the loop: the destination's last error
		for k := range out {
			out[k].err = errors.New(reason)
		}
		j.reachable = true
		s.record(j, &m, out, true, "", false)
		return
	}
	host, tlsOn := s.transact(j, &m, cfg, out)
	s.record(j, &m, out, dying, host, tlsOn)
}

// transact tries the hosts of j's route in order until one answers, and
// fills out with each recipient's result.
func (s *Sender) transact(j *job, m *queue.Message, cfg *Config, out []outcome) (string, bool) {
	setAll := func(err error, host string) {
		for k := range out {
			out[k] = outcome{err: err, host: host}
		}
	}
	if j.route.Proto == route.QMTP {
		// XXX: the QMTP transport is issue 6's; until then a QMTP route
		// defers, so that nothing is bounced for want of it.
		setAll(errors.New("QMTP transport not available in this gw-send (#4.3.0)"), "")
		j.reachable, j.lastErr = true, "no QMTP transport"
		return "", false
	}
	ctx, cancel := context.WithTimeout(j.ctx, cfg.ConnectTimeout+10*time.Second)
	hosts, err := route.Hosts(ctx, s.res, j.domain, j.route, cfg.SMTPPort)
	cancel()
	if err != nil {
		setAll(err, "")
		j.reachable = deliver.Permanent(err) // a DNS failure backs the destination off
		j.lastErr = err.Error()
		return "", false
	}
	dcfg := deliver.Config{Helo: cfg.Helo, ConnectTimeout: cfg.ConnectTimeout, Timeout: cfg.Timeout,
		NoTLS: !cfg.TLS, LMTP: j.route.Proto == route.LMTP}
	var lastErr error
	for _, h := range hosts {
		if j.ctx.Err() != nil {
			lastErr = errStopped
			break
		}
		sess, err := deliver.Dial(j.ctx, h, dcfg)
		if err != nil {
			s.log.Info("connect", "qid", j.id, "host", h.String(), "error", err)
			lastErr = err
			var rp *deliver.Reply
			if errors.As(err, &rp) && rp.Code != 421 && rp.Code/100 == 5 {
				// A 5xx greeting or EHLO is an answer about this host, not
				// the message: try the next one.
				continue
			}
			continue
		}
		done := s.session(j, m, sess, h, out)
		tlsOn := sess.TLS()
		sess.Close()
		if done {
			j.reachable = true
			return h.String(), tlsOn
		}
		lastErr = out[0].err
	}
	if lastErr == nil {
		lastErr = errors.New("no host to try")
	}
	setAll(lastErr, "")
	j.reachable = j.ctx.Err() != nil // aborted: the destination is not to blame
	j.lastErr = lastErr.Error()
	return "", false
}

// session carries the message over one session. It returns false when the
// host failed as a whole (connection lost before an answer about the
// message), so the next host is tried.
func (s *Sender) session(j *job, m *queue.Message, sess deliver.Session, h route.Host, out []outcome) bool {
	host := h.String()
	setAll := func(err error) {
		for k := range out {
			out[k] = outcome{err: err, host: host}
		}
	}
	d, err := sess.Start(m.Sender, m.Size, needsUTF8(m, j.rcpts))
	if err != nil {
		setAll(err)
		return isAnswer(err)
	}
	for _, i := range j.rcpts {
		// A refusal here comes out of Commit too (with pipelining it
		// can only come from there).
		d.AddRcpt(m.Recipients[i].Address)
	}
	body, err := s.r.Body(j.id)
	if err != nil {
		d.Abort()
		setAll(fmt.Errorf("cannot read the queued message: %w", err))
		return true
	}
	err = d.Body(body)
	body.Close()
	if err != nil {
		if errors.Is(err, queue.ErrCorrupt) {
			setAll(fmt.Errorf("queued message is corrupt (#5.3.0): %w", err))
			out[0].err = permanent{out[0].err}
			for k := range out {
				out[k].err = out[0].err
			}
			return true
		}
		d.Abort()
		setAll(err)
		return isAnswer(err)
	}
	res, err := d.Commit()
	if err != nil {
		setAll(err)
		return isAnswer(err)
	}
	for k := range out {
		out[k] = outcome{err: res[k], host: host}
	}
	return true
}

// isAnswer reports whether err is a server's reply (other than 421), as
// opposed to a connection that failed.
func isAnswer(err error) bool {
	var rp *deliver.Reply
	return errors.As(err, &rp) && rp.Code != 421
}

// permanent marks an error of gw-send's own as permanent.
type permanent struct{ error }

func (p permanent) Temporary() bool { return false }
func (p permanent) Unwrap() error   { return p.error }

func needsUTF8(m *queue.Message, rcpts []int) bool {
	if !isASCII(m.Sender) {
		return true
	}
	for _, i := range rcpts {
		if !isASCII(m.Recipients[i].Address) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// record writes the outcomes to the journal, logs a line per recipient,
// and syncs. dying turns temporary failures into permanent ones
// (queuelifetime passed).
func (s *Sender) record(j *job, m *queue.Message, out []outcome, dying bool, host string, tlsOn bool) {
	t := s.now()
	for k, i := range j.rcpts {
		rc := m.Recipients[i]
		o := out[k]
		var err error
		result := "delivered"
		reply := ""
		switch {
		case o.err == nil:
			err = s.r.Delivered(j.id, i)
		case errors.Is(o.err, errStopped):
			result = "aborted" // no attempt counted: nothing was decided
			reply = o.err.Error()
		case deliver.Permanent(o.err):
			result, reply = "failed", o.err.Error()
			err = s.r.Failed(j.id, i, reply)
		case j.ctx != nil && j.ctx.Err() != nil:
			result, reply = "aborted", errStopped.Error()
		case dying:
			result = "failed"
			reply = o.err.Error() + "; I'm not going to try again; this message has been in the queue too long (#5.4.7)"
			err = s.r.Failed(j.id, i, reply)
		default:
			result, reply = "deferred", o.err.Error()
			next := schedule.NextRetry(m.Arrival, t, schedule.RemoteSkip)
			err = s.r.Deferred(j.id, i, next, reply)
		}
		if err != nil {
			s.log.Warning("journal", "qid", j.id, "rcpt", rc.Address, "error", err)
		}
		s.log.Info("delivery", "qid", j.id, "rcpt", rc.Address, "dest", j.dest, "host", firstNonEmpty(o.host, host),
			"tls", yesNo(tlsOn), "result", result, "reply", strings.TrimSpace(reply))
	}
	if err := s.r.Sync(); err != nil {
		s.log.Alert("sync", "qid", j.id, "error", err)
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
