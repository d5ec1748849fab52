package send

import (
	"context"
	"errors"
	"time"

	"gw/lib/deliver"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
)

// kind is how the scheduler counts j's destination: a QMTP route's
// deliveries share pipelined connections, so many may be in flight to
// one destination (concurrencyqmtp) for few connections.
func (j *job) kind() schedule.Kind {
	if j.route.Proto == route.QMTP {
		return schedule.Pipelined
	}
	return schedule.Connection
}

// limits are the scheduler's limits under c.
func (c *Config) limits() schedule.Limits {
	return schedule.Limits{Overall: c.Overall, PerDest: c.PerDest, PerPipelined: c.PerQMTP,
		PipelineDepth: deliver.QMTPInFlight, BackoffMin: c.BackoffMin, BackoffMax: c.BackoffMax}
}

// transactQMTP is transact for a qmtproutes route. It leaves out the
// session pool: lib/deliver shares its QMTP connections between all jobs
// for a host and pipelines their packages, so a job costs no connection
// and no round trip of its own. A host that takes the package but whose
// connection is lost before the responses is not tried again now: the
// message may have been queued there (deferred, as for SMTP after DATA).
func (s *Sender) transactQMTP(j *job, m *queue.Message, cfg *Config, out []outcome) (string, bool) {
	ctx, cancel := context.WithTimeout(j.ctx, cfg.ConnectTimeout+10*time.Second)
	hosts, err := route.Hosts(ctx, s.res, j.domain, j.route, cfg.SMTPPort, cfg.Self)
	cancel()
	if err == nil && len(hosts) == 0 {
		err = errors.New("no host to try")
	}
	dcfg := deliver.Config{ConnectTimeout: cfg.ConnectTimeout, Timeout: cfg.Timeout}
	for _, h := range hosts {
		if j.ctx.Err() != nil {
			err = errStopped
			break
		}
		sess, derr := deliver.DialQMTP(j.ctx, h, dcfg)
		if derr != nil {
			s.log.Info("connect", "qid", j.id, "host", h.String(), "err", derr)
			err = derr
			continue
		}
		if s.session(j, m, sess, h, out) {
			j.reachable = true
			return h.String(), false
		}
		err = out[0].err
	}
	for k := range out {
		out[k] = outcome{err: err}
	}
	j.reachable = j.ctx.Err() != nil || deliver.Permanent(err) // a DNS failure backs the destination off
	j.lastErr = err.Error()
	return "", false
}
