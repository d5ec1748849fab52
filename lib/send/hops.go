package send

import (
	"gw/lib/hops"
	"gw/lib/queue"
)

// errLooping is the failure of a message with too many trace lines: the
// listeners' reply to one, as a bounce.
var errLooping = &gwError{"5.4.6", "too many hops, this message is looping"}

// looping counts the trace lines of stored message id as the listeners
// count those of a message coming in (package hops), and reports whether
// it is at the limit. It counts the stored message, gw-queue's Received
// line included, as the next hop will: a message injected locally with
// its trace lines is caught here, not by a listener, and one that went
// round through a listener that passed it at one under the limit stops
// here rather than one hop later. Only the header is read. A message that
// cannot be read is not looping: the attempt to deliver it says why.
func (s *Sender) looping(id queue.ID) bool {
	body, err := s.r.Body(id)
	if err != nil {
		return false
	}
	defer body.Close()
	var c hops.Counter
	buf := make([]byte, 4096)
	for !c.Done() && !c.Looping() {
		n, err := body.Read(buf)
		c.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return c.Looping()
}
