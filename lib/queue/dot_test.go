package queue

import (
	"testing"
	"time"
)

// TestDotSentSurvivesTheRunner: a dot record with no outcome after it is
// what the next runner finds, through compactions, and what a lock-free
// reader sees; the outcome recorded after it is the word that counts.
func TestDotSentSurvivesTheRunner(t *testing.T) {
	q := newQueue(t)
	id := inject(t, q, []byte("Subject: x\n\n"), env("a@example.net", "b@example.net"))
	r, err := q.OpenRunner()
	must(t, err)
	must(t, r.DotSent(id, []int{0, 1}))
	must(t, r.Delivered(id, 1)) // b's reply came and was recorded; a's did not
	must(t, r.Sync())
	must(t, r.DotSent(id, []int{0}))
	// The runner dies: no Close, no Sync after the last dot record, which
	// was written.
	r.lock.Close()
	r.fifo.Close()
	r.keep.Close()
	for round := 0; round < 2; round++ { // each start compacts the journal
		r, err = q.OpenRunner()
		must(t, err)
		m, err := r.Message(id)
		must(t, err)
		if !m.Recipients[0].DotSent || m.Recipients[1].DotSent {
			t.Fatalf("start %d: DotSent a=%v b=%v, want a only", round, m.Recipients[0].DotSent, m.Recipients[1].DotSent)
		}
		must(t, r.Close())
	}
	snap, err := q.Snapshot()
	must(t, err)
	if !snap.Messages[0].Recipients[0].DotSent {
		t.Error("a lock-free reader does not see the dot record")
	}
	r, err = q.OpenRunner()
	must(t, err)
	defer r.Close()
	must(t, r.Deferred(id, 0, time.Now(), TextOutcome("possible duplicate", Pending)))
	m, _ := r.Message(id)
	if m.Recipients[0].DotSent {
		t.Error("an outcome after the dot leaves it set")
	}
	must(t, r.Sync())
	snap, err = q.Snapshot()
	must(t, err)
	if snap.Messages[0].Recipients[0].DotSent {
		t.Error("a reader sees the dot record past the outcome that followed it")
	}
}
