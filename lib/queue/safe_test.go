package queue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plantedQueue is a queue with one message of its own, and a second queue
// whose segment the planted links point at.
func plantedQueue(t *testing.T) (q *Queue, own ID, foreignSeg string) {
	t.Helper()
	q = newQueue(t)
	own = inject(t, q, []byte("Subject: own\n\nmine\n"), env("own@example.org"))
	other := newQueue(t)
	fid := inject(t, other, []byte("Subject: foreign\n\nnot this queue's\n"), env("foreign@example.org"))
	return q, own, other.path(dirSeg, fid.String())
}

// TestLinkedSegmentsAreSetAside: a symbolic link and a hard link in seg/
// to another queue's segment are neither listed nor delivered; the runner
// moves the links (not what they point to) into bad/ and names them.
func TestLinkedSegmentsAreSetAside(t *testing.T) {
	q, own, foreign := plantedQueue(t)
	before, _ := os.ReadFile(foreign)
	sym, hard := "0000000000001", "0000000000002"
	must(t, os.Symlink(foreign, q.path(dirSeg, sym)))
	must(t, os.Link(foreign, q.path(dirSeg, hard)))

	snap, err := q.Snapshot()
	must(t, err)
	if len(snap.Messages) != 1 || snap.Messages[0].ID != own {
		t.Fatalf("snapshot lists %d messages, want only %s", len(snap.Messages), own)
	}
	reasons := map[string]string{}
	for _, p := range snap.Problems {
		reasons[p.File] = p.Reason
	}
	if !strings.Contains(reasons["seg/"+sym], "symbolic link") || !strings.Contains(reasons["seg/"+hard], "hard link") {
		t.Errorf("snapshot problems %v", snap.Problems)
	}

	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	if msgs := r.Messages(); len(msgs) != 1 || msgs[0].ID != own {
		t.Fatalf("runner took %d messages, want only %s", len(msgs), own)
	}
	aside := q.TakeSetAside()
	got := map[string]string{}
	for _, a := range aside {
		got[a.File] = a.To
	}
	if got["seg/"+sym] != "bad/"+sym || got["seg/"+hard] != "bad/"+hard {
		t.Errorf("set aside %+v", aside)
	}
	if fi, err := os.Lstat(q.path(dirBad, sym)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("bad/%s is not the link itself: %v", sym, err)
	}
	after, err := os.ReadFile(foreign)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("the foreign segment changed or went: %v", err)
	}
}

// TestLinkedLockFilesAreReplaced: lock/clock, lock/reserve, lock/runner
// and lock/trigger replaced by links to a file outside the queue: opening
// the queue and its runner writes nothing there, sets the links aside and
// makes the lock files anew.
func TestLinkedLockFilesAreReplaced(t *testing.T) {
	q := newQueue(t)
	inject(t, q, []byte("Subject: x\n\ny\n"), env("a@example.org"))
	q.Close()
	outside := filepath.Join(t.TempDir(), "precious")
	must(t, os.WriteFile(outside, nil, 0o600))
	for _, f := range []string{fileClock, fileReserve, fileRunner, fileTrig} {
		os.Remove(q.path(f))
		must(t, os.Symlink(outside, q.path(f)))
	}
	q2, err := Open(q.Dir)
	must(t, err)
	defer q2.Close()
	r, err := q2.OpenRunner()
	must(t, err)
	q2.Pull()
	r.Close()
	if fi, err := os.Stat(outside); err != nil || fi.Size() != 0 {
		t.Fatalf("the file outside was written through a link: %v, size %d", err, fi.Size())
	}
	set := map[string]bool{}
	for _, a := range q2.TakeSetAside() {
		set[a.File] = strings.Contains(a.Reason, "symbolic link")
	}
	for _, f := range []string{fileClock, fileReserve, fileRunner, fileTrig} {
		if !set[f] {
			t.Errorf("%s not set aside as a link: %v", f, set)
		}
		if fi, err := os.Lstat(q.path(f)); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s not made anew: %v", f, err)
		}
	}
	if fi, err := os.Lstat(q.path(fileTrig)); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("lock/trigger is no FIFO: %v", err)
	}
}

// TestForeignOwnerSegment: a segment that is not the queue owner's is
// refused like a link. The test runs as root so that it can give the file
// away.
func TestForeignOwnerSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns a file: run it as root")
	}
	q := newQueue(t)
	id := inject(t, q, []byte("Subject: x\n\ny\n"), env("a@example.org"))
	must(t, os.Chown(q.path(dirSeg, id.String()), 65534, 65534))
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	if n := len(r.Messages()); n != 0 {
		t.Fatalf("runner took %d messages from a file of uid 65534", n)
	}
	aside := q.TakeSetAside()
	if len(aside) != 1 || aside[0].File != "seg/"+id.String() || !strings.Contains(aside[0].Reason, "owned by uid 65534") {
		t.Fatalf("set aside %+v", aside)
	}
}

// TestLinkedJournalIsSetAside: a journal file linked in from elsewhere
// decides nothing: a message it says removed is still delivered.
func TestLinkedJournalIsSetAside(t *testing.T) {
	q := newQueue(t)
	id := inject(t, q, []byte("Subject: x\n\ny\n"), env("a@example.org"))
	elsewhere := filepath.Join(t.TempDir(), "journal")
	jw, err := createJournal(elsewhere)
	must(t, err)
	jw.append(jrec{Kind: jRemoved, ID: id})
	must(t, jw.sync(jw.queued))
	jw.close()
	must(t, os.Symlink(elsewhere, q.path(dirJournal, journalName(0xfff))))
	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	if _, err := r.Message(id); err != nil {
		t.Fatalf("message %s: %v (the linked journal removed it)", id, err)
	}
	if a := q.TakeSetAside(); len(a) != 1 || a[0].File != "journal/"+journalName(0xfff) {
		t.Fatalf("set aside %+v", a)
	}
}

// TestSetAsideKeepsBoth: a second file of a name already in bad/ is
// kept beside the first.
func TestSetAsideKeepsBoth(t *testing.T) {
	q := newQueue(t)
	for i := 0; i < 2; i++ {
		must(t, os.WriteFile(q.path(dirSeg, "x"), []byte{byte(i)}, 0o640))
		if _, err := q.setAside("seg/x", "test"); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(q.path(dirBad, "x"))
	b, _ := os.ReadFile(q.path(dirBad, "x.1"))
	if !bytes.Equal(a, []byte{0}) || !bytes.Equal(b, []byte{1}) {
		t.Fatalf("bad/x %v, bad/x.1 %v", a, b)
	}
}

// TestLinkedQueueDirIsRefused: seg/ replaced by a link to another
// queue's seg/ makes the queue unusable, with a reason.
func TestLinkedQueueDirIsRefused(t *testing.T) {
	q := newQueue(t)
	other := newQueue(t)
	must(t, os.RemoveAll(q.path(dirSeg)))
	must(t, os.Symlink(other.path(dirSeg), q.path(dirSeg)))
	if _, err := OpenReadOnly(q.Dir); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "seg: not a directory") {
		t.Fatalf("OpenReadOnly: %v", err)
	}
}

// TestDamagedSegmentsAreKept: a segment cut short (no writer left) and a
// segment whose message was found damaged after it was read go to bad/
// when finished, named with why; neither is removed.
func TestDamagedSegmentsAreKept(t *testing.T) {
	q := newQueue(t)
	id := inject(t, q, []byte("Subject: x\n\ny\n"), env("a@example.org"))
	whole, err := os.ReadFile(q.path(dirSeg, id.String()))
	must(t, err)
	cut := "0000000000003"
	must(t, os.WriteFile(q.path(dirSeg, cut), whole[:len(whole)/2], 0o640))

	r, err := q.OpenRunner()
	must(t, err)
	defer r.Close()
	r.MarkDamaged(id, "checksum mismatch")
	must(t, r.Remove(id))
	st, err := r.Collect()
	must(t, err)
	if st.SetAside != 2 || st.Segments+st.Leftovers != 0 {
		t.Fatalf("collect: %+v, want both set aside", st)
	}
	why := map[string]string{}
	for _, a := range q.TakeSetAside() {
		why[a.File] = a.Reason
	}
	if !strings.Contains(why["seg/"+cut], "ends inside a record") || !strings.Contains(why["seg/"+id.String()], "damaged after it was read: checksum mismatch") {
		t.Errorf("set aside: %v", why)
	}
	for _, n := range []string{cut, id.String()} {
		if _, err := os.Stat(q.path(dirBad, n)); err != nil {
			t.Errorf("bad/%s: %v", n, err)
		}
	}
}
