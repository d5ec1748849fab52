package send

import (
	"gw/lib/deliver"
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
