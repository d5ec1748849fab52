package send

import (
	"gw/lib/qctl"
	"gw/lib/queue"
)

// ctlReq is a queue control request being served.
type ctlReq struct {
	name      string
	lines     []string
	remaining int
}

// ctlOp is one action on one message, waiting for its deliveries to stop.
type ctlOp struct {
	req    *ctlReq
	action string
	id     queue.ID
}

// serveCtl takes the new requests from the queue's ctl/ directory. An
// action that must not overlap a delivery (remove, hold, bounce) aborts the
// message's deliveries in flight and is carried out when they have ended;
// the answer is written only when every action of the request is done, so
// that no message is delivered after gw-qctl said it was removed.
func (s *Sender) serveCtl() {
	rqs := qctl.Pending(s.q)
	s.logSetAside() // what ctl/ held that the queue's rules refused
	for _, rq := range rqs {
		if _, seen := s.ctlReqs[rq.Name]; seen {
			continue
		}
		req := &ctlReq{name: rq.Name, remaining: len(rq.IDs)}
		s.ctlReqs[rq.Name] = req
		s.log.Info("ctl", "request", rq.Name, "action", rq.Action, "messages", len(rq.IDs))
		for _, id := range rq.IDs {
			op := ctlOp{req: req, action: rq.Action, id: id}
			f := s.flight[id]
			if f == nil || rq.Action == qctl.Retry || rq.Action == qctl.Release {
				s.applyCtl(op)
				continue
			}
			f.after = append(f.after, op)
			f.cancel()
			s.dropWaiting(id)
		}
		s.answerIfDone(req)
	}
}

// dropWaiting ends the jobs of message id that wait for a destination.
func (s *Sender) dropWaiting(id queue.ID) {
	var dropped []*job
	for dest, line := range s.waiting {
		keep := line[:0]
		for _, j := range line {
			if j.id == id {
				dropped = append(dropped, j)
			} else {
				keep = append(keep, j)
			}
		}
		if len(keep) == 0 {
			delete(s.waiting, dest)
		} else {
			s.waiting[dest] = keep
		}
	}
	for _, j := range dropped {
		s.jobDone(j)
	}
}

// runCtl carries out the operations that waited for message id's
// deliveries to end.
func (s *Sender) runCtl(id queue.ID, ops []ctlOp) {
	for _, op := range ops {
		s.applyCtl(op)
		s.answerIfDone(op.req)
	}
}

func (s *Sender) applyCtl(op ctlOp) {
	err := s.ctlAction(op.action, op.id)
	line := op.id.String() + " ok"
	if err != nil {
		line = op.id.String() + " error " + err.Error()
	}
	s.log.Info("ctl_done", "qid", op.id, "action", op.action, "result", line)
	op.req.lines = append(op.req.lines, line)
	op.req.remaining--
}

func (s *Sender) ctlAction(action string, id queue.ID) error {
	m, err := s.r.Message(id)
	if err != nil {
		return err
	}
	switch action {
	case qctl.Hold:
		delete(s.dueAt, id)
		return s.r.Hold(id)
	case qctl.Release:
		if err := s.r.Release(id); err != nil {
			return err
		}
		m.Held = false
		s.schedule(&m)
	case qctl.Remove:
		delete(s.dueAt, id)
		return s.r.Remove(id)
	case qctl.Retry:
		s.liftWaiting(id)
		s.retryNow(id)
	case qctl.Bounce:
		if err := qctl.Apply(s.r, qctl.Bounce, id); err != nil {
			return err
		}
		delete(s.dueAt, id)
		if _, busy := s.flight[id]; !busy {
			s.finish(id)
		}
	}
	return nil
}

func (s *Sender) answerIfDone(req *ctlReq) {
	if req.remaining > 0 {
		return
	}
	if err := s.r.Sync(); err != nil {
		s.log.Alert("sync", "err", err)
		return // unanswered: the tool times out rather than hear "ok" for something not durable
	}
	if err := qctl.Answer(s.q, req.name, req.lines); err != nil {
		s.log.Warning("ctl", "request", req.name, "err", err)
	}
	delete(s.ctlReqs, req.name)
}
