package send

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"gw/lib/deliver"
	"gw/lib/dsn"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
	"gw/lib/tracehdr"
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
	lastErr   string        // for the destinations table and the log
	lastOut   queue.Outcome // the same, as data: why the destination is backed off
}

// outcome is one recipient's result.
type outcome struct {
	err error      // nil: delivered
	at  route.Host // the host it comes from, if any
	dot bool       // the final dot went out
	// dsnTaken: the server offered DSN and got the recipient's request
	// (RFC 3461 5.2.1): a success notice, if asked, is its to send.
	dsnTaken bool
	// reply: the server's reply that took the message (delivered only),
	// logged so that the next hop's own id for it is not lost.
	reply string
}

// hostName is the host o comes from as the log names it, or "".
func (o outcome) hostName() string {
	if !o.at.Addr.IsValid() {
		return ""
	}
	return o.at.String()
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
		// Each recipient fails with its own last outcome, of an attempt
		// of its own (expireWaiting checked there was one).
		for k, i := range j.rcpts {
			out[k].err = storedOutcome{m.Recipients[i].Outcome}
		}
		j.reachable = true
		s.record(j, &m, out, true, "", deliver.TLSState{})
		return
	}
	if looping(&m) {
		for k := range out {
			out[k].err = errLooping
		}
		j.reachable = true
		s.record(j, &m, out, dying, "", deliver.TLSState{})
		return
	}
	host, tlsOn := s.transactWritable(j, &m, cfg, out)
	s.record(j, &m, out, dying, host, tlsOn)
}

// transactWritable fails at once the recipients no SMTP path can carry
// (all of them when the sender is such), before any DNS lookup or
// connection for a domain that is no domain, and transacts the others.
func (s *Sender) transactWritable(j *job, m *queue.Message, cfg *Config, out []outcome) (string, deliver.TLSState) {
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
		return "", deliver.TLSState{}
	}
	sub := *j
	sub.rcpts = keep
	subOut := make([]outcome, len(keep))
	host, tlsOn := s.transact(&sub, m, cfg, subOut)
	j.reachable, j.lastErr, j.lastOut = sub.reachable, sub.lastErr, sub.lastOut
	for n, k := range at {
		out[k] = subOut[n]
	}
	return host, tlsOn
}

// transact tries the hosts of j's route in order until one answers, and
// fills out with each recipient's result: one loop for every transport.
func (s *Sender) transact(j *job, m *queue.Message, cfg *Config, out []outcome) (string, deliver.TLSState) {
	setAll := func(err error, at route.Host) {
		for k := range out {
			out[k] = outcome{err: err, at: at}
		}
	}
	tr := s.transports[j.route.Proto]
	if tr.Pooled() {
		if host, tlsOn, done := s.reuse(j, m, out); done {
			return host, tlsOn
		}
	}
	ctx, cancel := context.WithTimeout(j.ctx, cfg.ConnectTimeout+10*time.Second)
	hosts, err := route.Hosts(ctx, s.res, j.domain, j.route, cfg.SMTPPort, cfg.Self)
	cancel()
	if err != nil {
		setAll(err, route.Host{})
		j.reachable = deliver.Permanent(err) // a DNS failure backs the destination off
		j.lastErr, j.lastOut = err.Error(), outcomeOf(err, false, route.Host{})
		return "", deliver.TLSState{}
	}
	opts := DialOptions{Helo: cfg.Helo, ConnectTimeout: cfg.ConnectTimeout, Timeout: cfg.Timeout,
		TLS: cfg.TLS, TLSFailed: s.tlsFailed(j)}
	var lastErr error
	var lastAt route.Host
	var lastTLS deliver.TLSState // the last session's, for a REQUIRETLS refusal
	tp := s.newTLSPolicies(j, cfg)
	// the header is read only where there is something to set aside
	tp.optional = j.route.Proto == route.SMTP && !m.RequireTLS && tp.recipientPolicy() && s.tlsRequiredNo(j.id)
	for _, h := range hosts {
		if j.ctx.Err() != nil {
			lastErr = errStopped
			break
		}
		if opts.Policy, err = tp.forHost(j.ctx, h); err != nil {
			s.log.Info("connect", "qid", j.id, "host", h.String(), "err", err)
			lastErr, lastAt, lastTLS = err, h, deliver.TLSState{}
			continue
		}
		// A session may outlive its job in the pool: its context is its
		// own, ended with the job's only while the job uses it (carry).
		sctx, scancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(j.ctx, scancel)
		sess, err := tr.Dial(sctx, h, opts)
		stop()
		if sess != nil {
			tp.reportSession(h, opts.Policy, deliver.TLSStateOf(sess), nil)
		} else {
			tp.reportSession(h, opts.Policy, deliver.TLSState{}, err)
		}
		if err != nil {
			scancel()
			// A 5xx greeting or EHLO is an answer about this host, not
			// the message: the next one is tried as for no answer.
			s.log.Info("connect", "qid", j.id, "host", h.String(), "err", err)
			lastErr, lastAt, lastTLS = err, h, deliver.TLSState{}
			continue
		}
		s.reportTesting(j, h, deliver.TLSStateOf(sess))
		ps := &pooled{sess: sess, cancel: scancel, host: h, opened: s.now()}
		// A session made with a policy set aside is this message's
		// alone: pooled, it would carry others that want the policy.
		done, tlsOn := s.carry(j, m, ps, out, tr.Pooled() && !tp.setAside)
		if done {
			j.reachable = true
			return h.String(), tlsOn
		}
		lastErr, lastAt, lastTLS = out[0].err, h, tlsOn
	}
	if lastErr == nil {
		lastErr = errNoHost
	}
	setAll(lastErr, lastAt)
	// Aborted, the destination is not to blame; nor when its last word
	// was a permanent refusal.
	j.reachable = j.ctx.Err() != nil || deliver.Permanent(lastErr)
	j.lastErr, j.lastOut = lastErr.Error(), outcomeOf(lastErr, false, lastAt)
	if isRequireTLSRefusal(lastErr) && lastTLS.On() {
		// the TLS the last host gave, which REQUIRETLS found wanting
		return "", lastTLS
	}
	// the level the destination wanted, for the log line of a failure
	return "", deliver.TLSState{Level: tp.entry.Level}
}

// reuse carries j's message over an idle session to its destination, if
// there is one. It reports false when there was none, or when the session
// failed before any of the message went out (the server closed it while
// idle): the caller then dials as if there had been none.
func (s *Sender) reuse(j *job, m *queue.Message, out []outcome) (host string, tlsOn deliver.TLSState, done bool) {
	for {
		ps := s.pool.get(j.dest, s.now())
		if ps == nil {
			return "", deliver.TLSState{}, false
		}
		if done, tlsOn := s.carry(j, m, ps, out, true); done {
			j.reachable = true
			return ps.host.String(), tlsOn, true
		}
		if j.ctx.Err() != nil {
			return "", deliver.TLSState{}, false
		}
		s.log.Info("reuse_failed", "qid", j.id, "host", ps.host.String(), "err", out[0].err)
	}
}

// carry runs j's transaction over session ps and then gives the session
// back to the pool (when pool) or closes it. done is false when the host
// failed as a whole before any of the message went out, so another may be
// tried.
func (s *Sender) carry(j *job, m *queue.Message, ps *pooled, out []outcome, pool bool) (done bool, tlsOn deliver.TLSState) {
	stop := context.AfterFunc(j.ctx, ps.cancel) // an abort drops the connection
	done = s.session(j, m, ps.sess, ps.host, out)
	stop()
	tlsOn = deliver.TLSStateOf(ps.sess)
	ps.uses++
	if pool && done && ps.sess.Reusable() && j.ctx.Err() == nil {
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
	// refused holds, per recipient of j, the server's answer to its RCPT
	// when that was a refusal. A failure of the whole transaction after
	// RCPT (a lost connection, a timeout after the dot) is not theirs:
	// they keep their own answer, and the final dot never went to them.
	refused := make([]error, len(j.rcpts))
	setAll := func(err error) {
		for k := range out {
			if refused[k] != nil {
				out[k] = outcome{err: refused[k], at: h}
				continue
			}
			out[k] = outcome{err: err, at: h}
		}
	}
	start := sess.Start
	if m.RequireTLS {
		// RFC 8689 4.2: only over authenticated TLS to a server that
		// takes REQUIRETLS. A host that cannot is skipped, as one that
		// cannot be reached: the next MX may; when none can, the
		// permanent 5.7.10 is the last word and the message bounces.
		start = func(sender string, size int64, utf8 bool, d dsn.Mail) (deliver.Delivery, error) {
			return deliver.StartRequireTLS(sess, sender, size, utf8, d)
		}
	}
	field := s.traceField(j, sess)
	size := m.Size + int64(len(field))
	d, err := start(m.Sender, size, needsUTF8(m, j.rcpts), m.DSN)
	if err != nil && m.RequireTLS && isReport(m) && deliver.RequireTLSNotOffered(err) {
		// RFC 8689 5: a report about a REQUIRETLS message (null sender,
		// or a double bounce's) is not dropped because the next hop
		// lacks REQUIRETLS, which would lose it for good: it goes over
		// the authenticated TLS session that hop gave, without the
		// parameter, and says so.
		s.log.Warning("requiretls_not_offered", "qid", j.id, "host", h.String(), "action", "report sent without REQUIRETLS")
		d, err = sess.Start(m.Sender, size, needsUTF8(m, j.rcpts), m.DSN)
	}
	if err != nil {
		setAll(err)
		if m.RequireTLS && isRequireTLSRefusal(err) {
			return false
		}
		return isAnswer(err)
	}
	var accepted []int // indexes into m.Recipients of those RCPT took
	for k, i := range j.rcpts {
		// A refusal here comes out of Commit too (with pipelining it
		// can only come from there, and the recipient counts as
		// accepted until then).
		if err := d.AddRcpt(m.Recipients[i].Address, m.Recipients[i].DSN); err != nil {
			refused[k] = err
		} else {
			accepted = append(accepted, i)
		}
	}
	body, err := s.r.Body(j.id)
	if err != nil {
		d.Abort()
		setAll(&gwError{"4.3.0", "cannot read the queued message: " + err.Error()})
		return true
	}
	err = d.Body(io.MultiReader(strings.NewReader(field), body))
	body.Close()
	if err != nil {
		if errors.Is(err, queue.ErrCorrupt) {
			// Its segment goes to bad/ once finished, not away.
			s.r.MarkDamaged(j.id, err.Error())
			clear(refused) // no recipient can have a message that is gone
			setAll(&gwError{"5.3.0", "queued message is corrupt: " + err.Error()})
			return true
		}
		d.Abort()
		setAll(err)
		return isAnswer(err) || dataSent(d)
	}
	dot := dataSent(d)
	if dot {
		s.dotSent(j, accepted)
	}
	res, err := d.Commit()
	if err != nil {
		setAll(afterDot(dot, err))
		for k := range out {
			out[k].dot = dot && refused[k] == nil
		}
		return isAnswer(err) || dot
	}
	var replies []string
	if r, ok := d.(interface{ Replies() []string }); ok {
		replies = r.Replies()
	}
	for k := range out {
		out[k] = outcome{err: afterDot(dot, res[k]), at: h, dot: dot && refused[k] == nil, dsnTaken: sess.OffersDSN()}
		if k < len(replies) && out[k].err == nil {
			out[k].reply = replies[k]
		}
	}
	return true
}

// isReport reports whether m is a delivery report of gw's own: a bounce
// or notice (null sender) or a double bounce.
func isReport(m *queue.Message) bool {
	return m.Sender == "" || m.Sender == DoubleBounceSender
}

// traceField is the X-Gw-Trace line that goes on top of j's message over
// sess: on a QMTP route, and to an SMTP server that offered XGWTRACE. QMTP
// routes lead to gw's own instances (qmtproutes: the primary's hand-over
// to its secondaries); gw-smtpd offers the keyword only to the clients
// its ACL marks GW_PEER. Each takes the field out and logs it. Other SMTP
// and LMTP servers, the Internet's or a mail store, get none, so the
// field leaks nowhere. "" also when me is not a name the field can carry.
func (s *Sender) traceField(j *job, sess deliver.Session) string {
	wants, ok := sess.(interface{ WantsTrace() bool })
	if j.route.Proto != route.QMTP && !(ok && wants.WantsTrace()) {
		return ""
	}
	l := tracehdr.Link{Host: s.config().Me, QID: j.id.String()}
	if _, ok := tracehdr.Parse("host=" + l.Host + " qid=" + l.QID); !ok {
		return ""
	}
	return tracehdr.Field(l)
}

// isRequireTLSRefusal reports gw's own 5.7.10: this host cannot carry a
// REQUIRETLS message, another may.
func isRequireTLSRefusal(err error) bool {
	var rp *deliver.Reply
	return errors.As(err, &rp) && rp.Own && rp.Enhanced == deliver.StatusRequireTLS
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

// errNoHost is a route that gave no host at all to try.
var errNoHost = &gwError{"4.4.4", "no host to try"}

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
func (s *Sender) record(j *job, m *queue.Message, out []outcome, dying bool, host string, tlsOn deliver.TLSState) {
	t := s.now()
	// Success notices go out before the deliveries are recorded: a crash
	// in between sends one twice, never none (as bounces do).
	s.notifySuccess(j, m, out)
	var delayed []queue.Recipient // deferred long enough to warn the sender
	for k, i := range j.rcpts {
		rc := m.Recipients[i]
		o := out[k]
		var err error
		result := "delivered"
		var oc queue.Outcome
		s.logDuplicate(j, rc, o)
		switch {
		case o.err == nil:
			err = s.r.Delivered(j.id, i)
		case errors.Is(o.err, errStopped):
			result = "aborted" // no attempt counted: nothing was decided
			oc = queue.Outcome{Source: queue.FromGW, Text: o.err.Error()}
		case deliver.Permanent(o.err):
			result, oc = "failed", outcomeOf(o.err, o.dot, o.at)
			err = s.r.Failed(j.id, i, oc)
		case j.ctx != nil && j.ctx.Err() != nil:
			result, oc = "aborted", queue.Outcome{Source: queue.FromGW, Text: errStopped.Error()}
		case dying:
			result, oc = "failed", expired(outcomeOf(o.err, o.dot, o.at))
			err = s.r.Failed(j.id, i, oc)
		default:
			result, oc = "deferred", outcomeOf(o.err, o.dot, o.at)
			next := schedule.Capped(schedule.NextRetry(m.Arrival, t, schedule.RemoteSkip), t, s.config().BackoffMax)
			err = s.r.Deferred(j.id, i, next, oc)
			// NOTIFY without DELAY (NEVER included) asks for no
			// delay notice; without NOTIFY, delaywarning decides.
			if err == nil && warnNow(s.config().DelayWarning, m.Arrival, t, rc) && rc.DSN.Notify.Wants(dsn.NotifyDelay) {
				rc.Outcome = oc
				delayed = append(delayed, rc)
			}
		}
		if err != nil {
			s.log.Warning("journal", "qid", j.id, "rcpt", rc.Address, "err", err)
		}
		s.logDelivery(j, rc, result, oc, o.reply, firstNonEmpty(o.hostName(), host), tlsOn)
	}
	// A message this job leaves wholly delivered is removed in the same
	// Sync as its outcomes: one flush a message, not a second one for
	// the removal after a hop through the loop. Nothing is owed once
	// every recipient is delivered (no bounce is to be injected before
	// the removal). A crash before the Sync keeps at most a prefix of
	// the records (a reader stops at the first torn one): the outcomes
	// without the removal, which the next start makes again, as after a
	// crash between two Syncs; or neither, and the message is delivered
	// again as it would have been anyway (its dot record says it may be
	// a duplicate). A removal never outlives the outcomes it follows. A
	// job cancelled for gw-qctl or a stop leaves the message to the loop.
	removed := (j.ctx == nil || j.ctx.Err() == nil) && s.r.RemoveDelivered(j.id)
	if err := s.r.Sync(); err != nil {
		s.log.Alert("sync", "qid", j.id, "err", err)
		return
	}
	if removed {
		s.log.Info("end", "qid", j.id, "delivered", len(m.Recipients), "failed", 0)
	}
	if len(delayed) > 0 {
		if err := s.warn(m, delayed); err != nil {
			s.log.Warning("delay_warning", "qid", j.id, "err", err)
		}
	}
}

// logDelivery logs recipient rc's result: the session's TLS (tlsOn), the
// outcome's fields, and the outcome on one line as gw-qstat shows it, or
// on success the reply that took the message (okReply).
func (s *Sender) logDelivery(j *job, rc queue.Recipient, result string, oc queue.Outcome, okReply, host string, tlsOn deliver.TLSState) {
	fields := []any{"qid", j.id, "rcpt", rc.Address, "dest", j.dest, "host", host, "tls", yesNo(tlsOn.On())}
	fields = append(fields, tlsFields(tlsOn)...)
	fields = append(fields, "result", result)
	if oc.Status != "" {
		fields = append(fields, "status", oc.Status)
	}
	if oc.Stage != "" {
		fields = append(fields, "stage", oc.Stage)
	}
	if oc.Code != 0 {
		fields = append(fields, "code", oc.Code)
	}
	if oc.DotSent {
		fields = append(fields, "dot", "yes")
	}
	reply := oc.String()
	if reply == "" {
		reply = okReply
	}
	s.log.Info("delivery", append(fields, "reply", reply)...)
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
