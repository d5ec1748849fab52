package handoff

import "golang.org/x/sys/unix"

// Space is how a listener learns whether the queue it hands messages to
// has room for one more, so that it can say so at MAIL (452 4.3.1) rather
// than after the client sent the whole message. The listener runs as
// another user than the queue's owner and may not read the queue
// directory, but it can always reach the path it injects through:
// gw-queued's socket (GW_QUEUED, which lives in the queue's lock/), or
// the queue directory gw-queue is told (GW_QUEUE). statfs(2) needs no
// more than that path to name the filesystem. A wrapper named by
// QMAILQUEUE (gw-scan) passes the same variables on to the injector it
// ends in, so they name the right queue there too.
type Space struct {
	Path string // on the queue's filesystem; "" = unknown, never short
}

// SpaceFor returns the Space of the queue a listener's environment names.
func SpaceFor(getenv func(string) string) Space {
	if p := getenv("GW_QUEUED"); p != "" {
		return Space{Path: p}
	}
	return Space{Path: getenv("GW_QUEUE")}
}

// SpaceNeeded is the free space a message needs to be taken: one and a
// half times databytes, or, with no databytes limit, the size the client
// declared (SIZE=, the QMTP length); 0 when neither is known. The half
// leaves room for the queue's own records and for the messages arriving
// beside this one.
func SpaceNeeded(databytes, declared int64) int64 {
	base := databytes
	if base <= 0 {
		base = declared
	}
	if base <= 0 {
		return 0
	}
	return base + base/2
}

// Short reports whether the filesystem has less than need bytes free for
// an unprivileged writer, and how many it has. When it cannot tell (no
// path, statfs fails) it reports false with the error: a listener that
// cannot see the queue's filesystem takes the message and lets the
// injector decide, as before the check.
func (sp Space) Short(need int64) (short bool, free int64, err error) {
	if sp.Path == "" || need <= 0 {
		return false, 0, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(sp.Path, &st); err != nil {
		return false, 0, err
	}
	free = int64(st.Bavail) * st.Bsize
	return free < need, free, nil
}
