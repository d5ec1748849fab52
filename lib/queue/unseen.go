package queue

import "time"

// announceEvery is how long after its last flushed notice gw-queued
// repeats it while a segment is open (Committer.SealIdle ends that). A runner that starts leaves the messages of
// an open segment that no runner has seen until it hears one (cutUnseen),
// so this is about how long its start may wait for them.
const announceEvery = time.Second

// cutUnseen drops from s, a segment read to its end at load while its
// writer (gw-queued) still holds it, the messages from the first one that
// no runner has recorded in the journal, and sets rs to read them again
// from there. Such a message may belong to a batch whose flush is under
// way: if the flush fails, gw-queued refuses the batch (451) and cuts it
// off or cancels it, and a runner that had taken it would deliver or
// bounce a message that was refused. Refresh reads them once gw-queued
// announces the length it flushed, or once no writer holds the segment.
//
// The messages a runner has recorded come first in a segment: the runner
// records them in the order it reads them, and a journal keeps a prefix
// of its records, so the cut loses none of them.
// It reports whether it cut anything.
func cutUnseen(s *segScan, rs *runSeg, states map[ID]*msgState) bool {
	for k, m := range s.messages {
		if states[m.ID] != nil {
			continue
		}
		s.messages = s.messages[:k]
		rs.end = m.Offset
		// A seal or a problem lies after the cut: the next read finds
		// them again.
		rs.sealed, rs.problem = false, nil
		return true
	}
	return false
}

// takeUnseen waits, at the runner's start, until gw-queued has announced
// how far each segment that load cut is flushed (or has let it go), at
// most two announcements, and then reads what was announced: so that a
// runner's Messages holds every message acknowledged before it started
// (gw-qctl acting without gw-send relies on that), and none whose flush
// is still under way.
func (r *Runner) takeUnseen() {
	if len(r.unseen) == 0 {
		return
	}
	for deadline := time.Now().Add(2 * announceEvery); time.Now().Before(deadline); {
		heard := true
		for _, name := range r.unseen {
			if r.notices.flushed(name) == 0 && writerAlive(r.q.path(dirSeg, name)) {
				heard = false
			}
		}
		if heard {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.unseen = nil
	r.Refresh()
}
