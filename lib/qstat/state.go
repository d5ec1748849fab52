package qstat

import (
	"time"

	"gw/lib/queue"
)

// MsgState is a message's state as gw-qstat reports it (see the package
// comment for what each means).
type MsgState int

// Message states, in the order reports print them.
const (
	Incoming MsgState = iota
	Active
	Deferred
	Hold
	Done
	msgStateCount
)

var msgStateNames = [msgStateCount]string{"incoming", "active", "deferred", "hold", "done"}

func (s MsgState) String() string { return msgStateNames[s] }

// StateOf classifies m. Hold wins over everything the runner may have
// recorded, since a held message waits for the administrator whatever its
// recipients say; a message not yet picked up has no recorded state.
func StateOf(m *queue.Message) MsgState {
	switch {
	case m.Held:
		return Hold
	case !seen(m):
		return Incoming
	}
	pending, tried := false, false
	for _, r := range m.Recipients {
		if r.State == queue.Pending {
			pending = true
			tried = tried || r.Attempts > 0
		}
	}
	switch {
	case !pending:
		return Done
	case tried:
		return Deferred
	}
	return Active
}

// rcptStates are the recipient states in the order reports print them.
var rcptStates = []queue.State{queue.Pending, queue.Delivered, queue.Failed}

// Counts is a report reduced to numbers.
type Counts struct {
	Messages   int
	Msg        [msgStateCount]int
	Rcpt       [3]int // by queue.State
	Bytes      int64
	Oldest     time.Time // arrival of the oldest message; zero when empty
	InProgress int
	Problems   int
}

// Count reduces a report to numbers.
func Count(r Report) Counts {
	c := Counts{Messages: len(r.Messages), InProgress: r.InProgress, Problems: len(r.Problems) + len(r.SetAside)}
	for _, m := range r.Messages {
		c.Msg[StateOf(m)]++
		for _, rc := range m.Recipients {
			if int(rc.State) < len(c.Rcpt) {
				c.Rcpt[rc.State]++
			}
		}
		c.Bytes += m.Size
		if c.Oldest.IsZero() || m.Arrival.Before(c.Oldest) {
			c.Oldest = m.Arrival
		}
	}
	return c
}

// add sums o into c.
func (c *Counts) add(o Counts) {
	c.Messages += o.Messages
	for i := range c.Msg {
		c.Msg[i] += o.Msg[i]
	}
	for i := range c.Rcpt {
		c.Rcpt[i] += o.Rcpt[i]
	}
	c.Bytes += o.Bytes
	if c.Oldest.IsZero() || !o.Oldest.IsZero() && o.Oldest.Before(c.Oldest) {
		c.Oldest = o.Oldest
	}
	c.InProgress += o.InProgress
	c.Problems += o.Problems
}

// seen reports whether the runner has taken up m: its journal says picked
// up, or records a state only the runner writes. The second half matters
// because a runner marks picked up only what it finds after it started
// (Runner.Refresh), not what it finds at start, and a message it has
// tried or held is not waiting to be preprocessed whatever the mark says.
func seen(m *queue.Message) bool {
	if m.Picked || m.Held {
		return true
	}
	for _, r := range m.Recipients {
		if r.State != queue.Pending || r.Attempts > 0 {
			return true
		}
	}
	return false
}
