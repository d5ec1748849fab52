package send

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gw/lib/bounce"
	"gw/lib/deliver"
	"gw/lib/dsn"
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
	// dsnTaken: the server offered DSN and got the recipient's request
	// (RFC 3461 5.2.1): a success notice, if asked, is its to send.
	dsnTaken bool
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
	if s.looping(j.id) {
		for k := range out {
			out[k].err = errLooping
		}
		j.reachable = true
		s.record(j, &m, out, dying, "", false)
		return
	}
	host, tlsOn := s.transactWritable(j, &m, cfg, out)
	s.record(j, &m, out, dying, host, tlsOn)
}

// transactWritable fails at once the recipients no SMTP path can carry
// (all of them when the sender is such), before any DNS lookup or
// connection for a domain that is no domain, and transacts the others.
func (s *Sender) transactWritable(j *job, m *queue.Message, cfg *Config, out []outcome) (string, bool) {
	senderErr := deliver.Unwritable(m.Sender, true)
	var keep, at []int
	for k, i := range j.rcpts {
		err := senderErr
		if err == nil {
			err = deliver.Unwritable(m.Recipients[i].Address, false)
		}
		if err != nil {
			out[k].err = err
			continue
		}
		keep, at = append(keep, i), append(at, k)
	}
	if len(keep) == len(j.rcpts) {
		return s.transact(j, m, cfg, out)
	}
	if len(keep) == 0 {
		j.reachable = true // nothing was tried: the destination is not to blame
		return "", false
	}
	sub := *j
	sub.rcpts = keep
	subOut := make([]outcome, len(keep))
	host, tlsOn := s.transact(&sub, m, cfg, subOut)
	j.reachable, j.lastErr = sub.reachable, sub.lastErr
	for n, k := range at {
		out[k] = subOut[n]
	}
	return host, tlsOn
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
		return s.transactQMTP(j, m, cfg, out)
	}
	if host, tlsOn, done := s.reuse(j, m, out); done {
		return host, tlsOn
	}
	ctx, cancel := context.WithTimeout(j.ctx, cfg.ConnectTimeout+10*time.Second)
	hosts, err := route.Hosts(ctx, s.res, j.domain, j.route, cfg.SMTPPort, cfg.Self)
	cancel()
	if err != nil {
		setAll(err, "")
		j.reachable = deliver.Permanent(err) // a DNS failure backs the destination off
		j.lastErr = err.Error()
		return "", false
	}
	dcfg := deliver.Config{Helo: cfg.Helo, ConnectTimeout: cfg.ConnectTimeout, Timeout: cfg.Timeout,
		NoTLS: !cfg.TLS, LMTP: j.route.Proto == route.LMTP, TLSFailed: s.tlsFailed(j)}
	var lastErr error
	for _, h := range hosts {
		if j.ctx.Err() != nil {
			lastErr = errStopped
			break
		}
		sctx, scancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(j.ctx, scancel)
		sess, err := deliver.Dial(sctx, h, dcfg)
		stop()
		if err != nil {
			scancel()
			// A 5xx greeting or EHLO is an answer about this host, not
			// the message: the next one is tried as for no answer.
			s.log.Info("connect", "qid", j.id, "host", h.String(), "error", err)
			lastErr = err
			continue
		}
		ps := &pooled{sess: sess, cancel: scancel, host: h, opened: s.now()}
		if done, tlsOn := s.carry(j, m, ps, out); done {
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

// reuse carries j's message over an idle session to its destination, if
// there is one. It reports false when there was none, or when the session
// failed before any of the message went out (the server closed it while
// idle): the caller then dials as if there had been none.
func (s *Sender) reuse(j *job, m *queue.Message, out []outcome) (host string, tlsOn, done bool) {
	for {
		ps := s.pool.get(j.dest, s.now())
		if ps == nil {
			return "", false, false
		}
		if done, tlsOn := s.carry(j, m, ps, out); done {
			j.reachable = true
			return ps.host.String(), tlsOn, true
		}
		if j.ctx.Err() != nil {
			return "", false, false
		}
		s.log.Info("reuse_failed", "qid", j.id, "host", ps.host.String(), "error", out[0].err)
	}
}

// carry runs j's transaction over session ps and then gives the session
// back to the pool or closes it. done is false when the host failed as a
// whole before any of the message went out, so another may be tried.
func (s *Sender) carry(j *job, m *queue.Message, ps *pooled, out []outcome) (done, tlsOn bool) {
	stop := context.AfterFunc(j.ctx, ps.cancel) // an abort drops the connection
	done = s.session(j, m, ps.sess, ps.host, out)
	stop()
	tlsOn = ps.sess.TLS()
	ps.uses++
	if done && ps.sess.Reusable() && j.ctx.Err() == nil {
		cfg := s.config()
		s.pool.put(j.dest, ps, s.now(), cfg.PerDest, max(cfg.Overall, 1))
	} else {
		ps.close()
	}
	return done, tlsOn
}

// session carries the message over one session. It returns false when the
// host failed as a whole (connection lost before an answer about the
// message and before any of the body went out), so the next host is
// tried; once the body has begun to go out, a lost connection may have
// delivered the message, and it is deferred rather than sent again at
// once (RFC 5321 6.1: duplicates only in that window).
func (s *Sender) session(j *job, m *queue.Message, sess deliver.Session, h route.Host, out []outcome) bool {
	host := h.String()
	setAll := func(err error) {
		for k := range out {
			out[k] = outcome{err: err, host: host}
		}
	}
	d, err := sess.Start(m.Sender, m.Size, needsUTF8(m, j.rcpts), m.DSN)
	if err != nil {
		setAll(err)
		return isAnswer(err)
	}
	for _, i := range j.rcpts {
		// A refusal here comes out of Commit too (with pipelining it
		// can only come from there).
		d.AddRcpt(m.Recipients[i].Address, m.Recipients[i].DSN)
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
			// Its segment goes to bad/ once finished, not away.
			s.r.MarkDamaged(j.id, err.Error())
			setAll(permanent{fmt.Errorf("queued message is corrupt (#5.3.0): %w", err)})
			return true
		}
		d.Abort()
		setAll(err)
		return isAnswer(err) || dataSent(d)
	}
	dot := dataSent(d)
	if dot {
		s.dotSent(j)
	}
	res, err := d.Commit()
	if err != nil {
		setAll(afterDot(dot, err))
		return isAnswer(err) || dot
	}
	for k := range out {
		out[k] = outcome{err: afterDot(dot, res[k]), host: host, dsnTaken: sess.OffersDSN()}
	}
	return true
}

// dataSent reports whether d's body began to go out; a transport that
// cannot tell is taken to have sent it.
func dataSent(d deliver.Delivery) bool {
	if ds, ok := d.(interface{ DataSent() bool }); ok {
		return ds.DataSent()
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
	// Success notices go out before the deliveries are recorded: a crash
	// in between sends one twice, never none (as bounces do).
	s.notifySuccess(j, m, out, host)
	var delayed []delayedRcpt // deferred long enough to warn the sender
	for k, i := range j.rcpts {
		rc := m.Recipients[i]
		o := out[k]
		var err error
		result := "delivered"
		reply, status := "", ""
		s.logDuplicate(j, rc, o)
		switch {
		case o.err == nil:
			err = s.r.Delivered(j.id, i)
		case errors.Is(o.err, errStopped):
			result = "aborted" // no attempt counted: nothing was decided
			reply = o.err.Error()
		case deliver.Permanent(o.err):
			result, reply, status = "failed", o.err.Error(), statusOf(o.err, true)
			err = s.r.Failed(j.id, i, reply)
		case j.ctx != nil && j.ctx.Err() != nil:
			result, reply = "aborted", errStopped.Error()
		case dying:
			result, status = "failed", "5.4.7"
			reply = o.err.Error() + "; I'm not going to try again; this message has been in the queue too long (#5.4.7)"
			err = s.r.Failed(j.id, i, reply)
		default:
			result, reply, status = "deferred", o.err.Error(), statusOf(o.err, false)
			next := schedule.Capped(schedule.NextRetry(m.Arrival, t, schedule.RemoteSkip), t, s.config().BackoffMax)
			err = s.r.Deferred(j.id, i, next, reply)
			// NOTIFY without DELAY (NEVER included) asks for no
			// delay notice; without NOTIFY, delaywarning decides.
			if err == nil && warnNow(s.config().DelayWarning, m.Arrival, t, rc) && rc.DSN.Notify.Wants(dsn.NotifyDelay) {
				rc.LastError = reply
				delayed = append(delayed, delayedRcpt{rc: rc, status: status, host: remoteName(o.err)})
			}
		}
		if err != nil {
			s.log.Warning("journal", "qid", j.id, "rcpt", rc.Address, "error", err)
		}
		fields := []any{"qid", j.id, "rcpt", rc.Address, "dest", j.dest, "host", firstNonEmpty(o.host, host),
			"tls", yesNo(tlsOn), "result", result}
		if status != "" {
			fields = append(fields, "status", status)
		}
		s.log.Info("delivery", append(fields, "reply", strings.TrimSpace(reply))...)
	}
	if err := s.r.Sync(); err != nil {
		s.log.Alert("sync", "qid", j.id, "error", err)
		return
	}
	if len(delayed) > 0 {
		if err := s.warn(m, delayed); err != nil {
			s.log.Warning("delay_warning", "qid", j.id, "error", err)
		}
	}
}

// statusOf is the enhanced status code of a failure, of class 5 when
// perm: the one a failure of lib/deliver carries, else the one written in
// its text (gw's own "(#5.1.2)" or a reply's), else X.0.0.
func statusOf(err error, perm bool) string {
	class := "4."
	if perm {
		class = "5."
	}
	var st interface{ Status() string }
	if errors.As(err, &st) && strings.HasPrefix(st.Status(), class) {
		return st.Status()
	}
	return bounce.Status(err.Error(), perm)
}

// remoteName is the name of the server that answered, or "".
func remoteName(err error) string {
	var rp *deliver.Reply
	if errors.As(err, &rp) {
		name, _, _ := strings.Cut(rp.Host, "[")
		return name
	}
	return ""
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
