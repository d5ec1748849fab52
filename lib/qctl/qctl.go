// Package qctl is the queue control protocol: how gw-qctl asks the queue's
// runner (gw-send) to hold, release, remove, retry or bounce messages
// while it runs, and the selections that name messages.
//
// The tool writes a request file into the queue's ctl/ directory by temp
// file and rename, pulls the trigger, and waits for the runner to write
// the answer beside it. When no runner holds the queue, the tool takes the
// runner lock itself and acts directly (Apply). Either way the one runner
// is the only writer of the journal.
//
//	ctl/<name>.req   "<action>\n" then one queue id a line
//	ctl/<name>.done  one line an id: "<id> ok" or "<id> error <text>"
package qctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"gw/lib/queue"
)

// Actions a request may ask for.
const (
	Hold    = "hold"    // keep from delivery until released
	Release = "release" // end a hold
	Remove  = "remove"  // delete without bounce; nothing is delivered after
	Retry   = "retry"   // try every pending recipient now
	Bounce  = "bounce"  // fail every pending recipient now: a DSN goes back
)

// Dir is the control directory of a queue, relative to the queue.
const Dir = "ctl"

// MaxIDs bounds the ids of one request.
const MaxIDs = 1 << 20

// Request is one parsed request.
type Request struct {
	Name   string // file name without .req
	Action string
	IDs    []queue.ID
}

// ValidAction reports whether a is an action of the protocol.
func ValidAction(a string) bool {
	switch a {
	case Hold, Release, Remove, Retry, Bounce:
		return true
	}
	return false
}

// ParseRequest parses the content of a request file.
func ParseRequest(b []byte) (action string, ids []queue.ID, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() {
		return "", nil, errors.New("empty request")
	}
	action = sc.Text()
	if !ValidAction(action) {
		return "", nil, fmt.Errorf("unknown action %q", action)
	}
	for sc.Scan() {
		if len(ids) >= MaxIDs {
			return "", nil, fmt.Errorf("more than %d ids", MaxIDs)
		}
		id, err := queue.ParseID(strings.TrimSpace(sc.Text()))
		if err != nil {
			return "", nil, fmt.Errorf("bad id %q", sc.Text())
		}
		ids = append(ids, id)
	}
	return action, ids, sc.Err()
}

// FormatRequest is the content of a request file.
func FormatRequest(action string, ids []queue.ID) []byte {
	var b bytes.Buffer
	b.WriteString(action + "\n")
	for _, id := range ids {
		b.WriteString(id.String() + "\n")
	}
	return b.Bytes()
}

// Pending lists the requests waiting in the queue's ctl/ directory; a file
// that does not parse is answered with an error at once. It is called by
// the queue's runner, which sets aside into bad/ what the queue's rules
// refuse (gw-queue(5)): a ctl/ that is a link, is not the queue owner's
// or is writable by others, and a request file that is a link, has other
// names or another owner. Nothing is read through them; the caller logs
// the moves by name (queue.TakeSetAside).
func Pending(q *queue.Queue) []Request {
	names, err := q.SideNames(Dir)
	var ue *queue.UnsafeError
	if errors.As(err, &ue) {
		q.SetAside(Dir, ue.Reason)
		return nil
	}
	if err != nil {
		return nil
	}
	var out []Request
	for _, n := range names {
		name, ok := strings.CutSuffix(n, ".req")
		if !ok {
			continue
		}
		if q.ExistsSide(rel(name + ".done")) {
			continue // answered, not yet collected by the tool
		}
		b, err := q.ReadSide(rel(n), maxFile)
		if errors.As(err, &ue) {
			q.SetAside(rel(n), ue.Reason)
			continue
		}
		if err != nil {
			continue
		}
		action, ids, err := ParseRequest(b)
		if err != nil {
			Answer(q, name, []string{"- error " + err.Error()})
			continue
		}
		out = append(out, Request{Name: name, Action: action, IDs: ids})
	}
	return out
}

// Answer writes the answer to request name (a new temp file, renamed).
func Answer(q *queue.Queue, name string, lines []string) error {
	if err := q.WriteSide(rel(name+".tmp"), []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return err
	}
	return q.RenameSide(rel(name+".tmp"), rel(name+".done"))
}

// rel is the name of the file name of ctl/, relative to the queue.
func rel(name string) string { return Dir + "/" + name }

// Apply carries out action on message id with a runner the caller holds
// exclusively (no gw-send running). Bounce needs gw-send's bounce logic,
// so with no gw-send it fails the recipients and leaves the message for
// gw-send to bounce when it starts.
func Apply(r *queue.Runner, action string, id queue.ID) error {
	switch action {
	case Hold:
		return r.Hold(id)
	case Release:
		return r.Release(id)
	case Remove:
		return r.Remove(id)
	case Retry:
		return retryNow(r, id)
	case Bounce:
		m, err := r.Message(id)
		if err != nil {
			return err
		}
		for i, rc := range m.Recipients {
			if rc.State == queue.Pending {
				if err := r.Failed(id, i, queue.Outcome{Source: queue.FromGW, Status: "5.0.0", Text: "bounced by the administrator (gw-qctl)"}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", action)
}

// retryNow without a running gw-send: every pending recipient becomes due
// now, which gw-send finds in the journal when it starts. Attempts and
// last errors stay.
func retryNow(r *queue.Runner, id queue.ID) error {
	m, err := r.Message(id)
	if err != nil {
		return err
	}
	t := time.Now()
	for i, rc := range m.Recipients {
		if rc.State == queue.Pending {
			if err := r.Reschedule(id, i, t); err != nil {
				return err
			}
		}
	}
	return nil
}
