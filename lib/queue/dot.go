package queue

// DotSent records, just before the final dot of a delivery goes out, that
// it is going out to recipients rcpts of message id. The record that
// states the reply supersedes it; a runner that finds it as the last word
// on a recipient (Recipient.DotSent) knows its predecessor stopped after
// the dot and before it recorded the reply: the remote may have taken the
// message, and delivering it again may give a duplicate.
//
// The record is written to the journal file but not flushed to disk: a
// flush per delivery would double the runner's disk flushes. It survives
// any end of the runner itself (kill -9, a panic, an out-of-memory kill),
// as the kernel holds it; it is lost only when the system goes down
// before the next flush of the journal, which comes with the next
// delivery's outcome (gw-queue.5 states the window).
func (r *Runner) DotSent(id ID, rcpts []int) error {
	r.mu.Lock()
	m := r.msgs[id]
	if m == nil {
		r.mu.Unlock()
		return ErrNoMessage
	}
	for _, i := range rcpts {
		if i < 0 || i >= len(m.Recipients) || m.Recipients[i].State != Pending {
			continue
		}
		m.Recipients[i].DotSent = true
		r.jw.append(jrec{Kind: jDot, ID: id, Index: uint32(i)})
	}
	r.mu.Unlock()
	return r.Flush()
}
