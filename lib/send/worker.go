package send

import "time"

// workerIdle is how long a worker waits for its next job before it ends:
// long enough to carry a steady trickle of mail, short enough that a burst
// (a queue's worth of bounces at start) leaves no crowd of goroutines.
const workerIdle = 30 * time.Second

// run runs fn, a job's work, on a worker that waits for one, or on a new
// worker. A goroutine a job would grow its stack again for every message
// (a delivery's calls go deep: DNS, TLS, the SMTP client, the journal),
// copying it at each doubling; a worker keeps the stack it grew.
func (s *Sender) run(fn func()) {
	select {
	case s.work <- fn:
	default:
		go s.worker(fn)
	}
}

// worker runs fn, then the jobs run hands it, until none comes for
// workerIdle.
func (s *Sender) worker(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-s.work:
		case <-idle.C:
			return
		}
	}
}
