package queue

import (
	"os"
	"testing"

	"gw/lib/envelope"
)

// TestJournalSyncKeepsRecordsAfterWriteFailure makes one journal flush
// fail in its write (a full disk) and checks that the records it carried
// are neither lost nor reported durable by a later flush of that file, and
// that the runner's Sync recovers by restating everything in a new file.
func TestJournalSyncKeepsRecordsAfterWriteFailure(t *testing.T) {
	q := newQueue(t)
	w, err := q.NewMessage(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: t\n\nbody\n"))
	if err := w.Commit(envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}}); err != nil {
		t.Fatal(err)
	}
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	id := w.ID()
	if err := r.Delivered(id, 0); err != nil {
		t.Fatal(err)
	}
	// Writes to a read-only descriptor of the journal fail, as on a full disk.
	good := r.jw.f
	ro, err := os.Open(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	r.jw.f = ro
	if err := r.jw.sync(r.jw.queued); err == nil {
		t.Fatal("a journal flush with a failing write returned nil")
	}
	// The runner's Sync restates its state in a new journal file.
	if err := r.Sync(); err != nil {
		t.Fatalf("Sync did not restate the journal: %v", err)
	}
	good.Close()
	r.Close()

	r, err = q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Recipients[0].State; got != Delivered {
		t.Errorf("after a failed then a good Sync and a restart: recipient %s, want %s", got, Delivered)
	}
}
