package qctl

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gw/lib/queue"
)

// Selection names messages: by id, or by what they hold. Every set field
// must match (and); IDs, when given, restrict the rest.
type Selection struct {
	IDs       []queue.ID
	Sender    string        // the sender contains this (case-insensitive)
	Recipient string        // a pending recipient contains this
	Domain    string        // a pending recipient's domain is this
	Older     time.Duration // queued longer ago than this
	Error     string        // a recipient's last error contains this
}

// Empty reports whether s names nothing at all (so no action can be meant
// for every message by accident).
func (s *Selection) Empty() bool {
	return len(s.IDs) == 0 && s.Sender == "" && s.Recipient == "" && s.Domain == "" && s.Older == 0 && s.Error == ""
}

// Match reports whether message m is selected at now.
func (s *Selection) Match(m *queue.Message, now time.Time) bool {
	if len(s.IDs) > 0 {
		found := false
		for _, id := range s.IDs {
			if id == m.ID {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if s.Sender != "" && !containsFold(m.Sender, s.Sender) {
		return false
	}
	if s.Older > 0 && now.Sub(m.Arrival) < s.Older {
		return false
	}
	if s.Recipient == "" && s.Domain == "" && s.Error == "" {
		return true
	}
	for _, rc := range m.Recipients {
		if s.Error != "" && !containsFold(rc.LastError(), s.Error) {
			continue
		}
		if (s.Recipient != "" || s.Domain != "") && rc.State != queue.Pending {
			continue
		}
		if s.Recipient != "" && !containsFold(rc.Address, s.Recipient) {
			continue
		}
		if s.Domain != "" {
			i := strings.LastIndexByte(rc.Address, '@')
			if i < 0 || !strings.EqualFold(rc.Address[i+1:], s.Domain) {
				continue
			}
		}
		return true
	}
	return false
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// ErrNoAnswer is returned by Do when the runner did not answer in time.
var ErrNoAnswer = errors.New("no answer from the queue's runner")

// Do carries out action on the messages sel names in the queue at dir and
// returns a line a message ("<id> ok" or "<id> error <why>"). With gw-send
// running it asks gw-send and waits up to wait for the answer; otherwise
// it takes the runner lock itself. Files the queue set aside meanwhile
// (links, files of another owner: see gw-queue(5)) are passed to warn.
func Do(dir, action string, sel *Selection, wait time.Duration, warn func(queue.SetAside)) ([]string, error) {
	q, err := queue.Open(dir)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	defer func() {
		for _, a := range q.TakeSetAside() {
			warn(a)
		}
	}()
	snap, err := q.Snapshot()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var ids []queue.ID
	for _, m := range snap.Messages {
		if sel.Match(m, now) {
			ids = append(ids, m.ID)
		}
	}
	var lines []string
	for _, id := range sel.IDs {
		found := false
		for _, x := range ids {
			found = found || x == id
		}
		if !found {
			lines = append(lines, id.String()+" error "+queue.ErrNoMessage.Error())
		}
	}
	if len(ids) == 0 {
		return lines, nil
	}
	got, err := direct(q, action, ids)
	if errors.Is(err, queue.ErrRunnerActive) {
		got, err = ask(q, action, ids, wait)
	}
	return append(lines, got...), err
}

// direct acts with the runner lock held by this process.
func direct(q *queue.Queue, action string, ids []queue.ID) ([]string, error) {
	r, err := q.OpenRunner()
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, id := range ids {
		if err := Apply(r, action, id); err != nil {
			lines = append(lines, id.String()+" error "+err.Error())
		} else {
			lines = append(lines, id.String()+" ok")
		}
	}
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return lines, nil
}

// ask hands the request to the running gw-send and waits for its answer;
// if gw-send goes away meanwhile, it acts itself. A ctl/ or an answer
// that the queue's rules refuse ends it with the refusal, nothing done
// through it.
func ask(q *queue.Queue, action string, ids []queue.ID, wait time.Duration) ([]string, error) {
	if err := q.SideDir(Dir); err != nil {
		return nil, fmt.Errorf("%s: %w", q.Dir, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%d.%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	tmp, req, done := rel(name+".new"), rel(name+".req"), rel(name+".done")
	if err := q.WriteSide(tmp, FormatRequest(action, ids)); err != nil {
		return nil, err
	}
	if err := q.RenameSide(tmp, req); err != nil {
		return nil, err
	}
	defer q.RemoveSide(req)
	defer q.RemoveSide(done)
	q.Pull()
	end := time.Now().Add(wait)
	for tick := 0; time.Now().Before(end); tick++ {
		b, err := q.ReadSide(done, maxFile)
		if err == nil {
			return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
		}
		if errors.Is(err, queue.ErrUnsafe) {
			return nil, fmt.Errorf("%s: %w", q.Dir, err)
		}
		if tick%20 == 19 {
			// gw-send gone? Take over — but only after taking the request
			// back, so that a gw-send starting now cannot act on it twice.
			if q.RenameSide(req, tmp) == nil {
				lines, err := direct(q, action, ids)
				if !errors.Is(err, queue.ErrRunnerActive) {
					q.RemoveSide(tmp)
					return lines, err
				}
				q.RenameSide(tmp, req)
				q.Pull()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, ErrNoAnswer
}
