package qstat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"gw/lib/queue"
)

// A fleet is several hosts' queues seen from one place: each host's
// gw-qstat --json output, fetched by the administrator's own loop (ssh,
// cron, a config manager) into one file a host. ReadFleet turns such a
// file back into a Report, so that Summary and Shape show the fleet as
// they show instances: totals first, then a host at a time.
//
// The files come from other hosts, over whatever path the administrator
// built: every line is checked as if it came from anyone, and a file with
// a line that does not parse is refused whole, naming the line, rather
// than counted in part.

// maxFleetLine bounds one JSON line: a message with the queue's largest
// recipient list fits well within it.
const maxFleetLine = 64 << 20

// HostLabel is the name a fleet file stands for: its base name without
// .json ("mx1.json" is mx1).
func HostLabel(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}

// ReadFleet reads one host's gw-qstat --json output.
func ReadFleet(host string, r io.Reader) Report {
	rep := Report{Source: Source{Instance: host}, Snapshot: &queue.Snapshot{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFleetLine)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		m, err := fleetMessage(sc.Bytes())
		if err != nil {
			return Report{Source: rep.Source, Snapshot: &queue.Snapshot{}, Err: fmt.Errorf("%s: line %d: %w", host, n, err)}
		}
		rep.Messages = append(rep.Messages, m)
	}
	if err := sc.Err(); err != nil {
		return Report{Source: rep.Source, Snapshot: &queue.Snapshot{}, Err: fmt.Errorf("%s: %w", host, err)}
	}
	return rep
}

var rcptStateNames = map[string]queue.State{}

func init() {
	for _, s := range rcptStates {
		rcptStateNames[s.String()] = s
	}
}

// fleetMessage is the reverse of JSON for one line.
func fleetMessage(line []byte) (*queue.Message, error) {
	var jm jsonMessage
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jm); err != nil {
		return nil, err
	}
	id, err := queue.ParseID(jm.QueueID)
	if err != nil {
		return nil, fmt.Errorf("queue_id %q: %w", jm.QueueID, err)
	}
	if jm.MessageSize < 0 || jm.ArrivalTime < 0 {
		return nil, fmt.Errorf("queue_id %s: negative size or arrival time", jm.QueueID)
	}
	m := &queue.Message{ID: id, Arrival: time.Unix(jm.ArrivalTime, 0), Size: jm.MessageSize, Sender: jm.Sender, Held: jm.Held}
	// The state name says whether the runner saw the message; the
	// recipients alone cannot tell an untried active one from incoming.
	m.Picked = jm.QueueName != Incoming.String()
	for _, jr := range jm.Recipients {
		st, ok := rcptStateNames[jr.State]
		if !ok {
			return nil, fmt.Errorf("queue_id %s: recipient state %q", jm.QueueID, jr.State)
		}
		if jr.Attempts < 0 {
			return nil, fmt.Errorf("queue_id %s: negative attempts", jm.QueueID)
		}
		rc := queue.Recipient{Address: jr.Address, State: st, Attempts: jr.Attempts}
		if jr.NextTry > 0 {
			rc.NextTry = time.Unix(jr.NextTry, 0)
		}
		m.Recipients = append(m.Recipients, rc)
	}
	return m, nil
}

// FleetShape writes one qshape table for the whole fleet, the messages of
// every host counted together; the per-host tables are Shape's. As
// Summary prints no totals when a queue could not be read, no fleet
// table is written when a host was left out: a sum without it would read
// as the fleet's.
func FleetShape(w io.Writer, reps []Report, now time.Time, by ShapeBy) error {
	all := Report{Source: Source{Instance: "fleet"}, Snapshot: &queue.Snapshot{}}
	n := 0
	for _, r := range reps {
		if r.Err != nil {
			return nil
		}
		all.Messages = append(all.Messages, r.Messages...)
		n++
	}
	if _, err := fmt.Fprintf(w, "fleet: %d hosts\n", n); err != nil {
		return err
	}
	return Shape(w, []Report{all}, now, by)
}
