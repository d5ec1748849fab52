package send

import (
	"gw/lib/hops"
	"gw/lib/queue"
)

// errLooping is the failure of a message with too many trace lines: the
// listeners' reply to one, as a bounce.
var errLooping = &gwError{"5.4.6", "too many hops, this message is looping"}

// looping reports whether stored message m has as many trace lines as the
// listeners refuse (package hops). It counts the stored message, gw-queue's
// Received line included, as the next hop will: a message injected locally
// with its trace lines is caught here, not by a listener, and one that went
// round through a listener that passed it at one under the limit stops
// here rather than one hop later. The count is the runner's, made by the
// checksum scan that found the message, so the check reads nothing.
func looping(m *queue.Message) bool {
	return m.Hops >= hops.Max
}
