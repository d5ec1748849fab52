package qctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/queue"
)

func newQueue(t *testing.T) *queue.Queue {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "queue")
	if err := queue.Init(dir); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func asideOf(q *queue.Queue) map[string]string {
	m := map[string]string{}
	for _, a := range q.TakeSetAside() {
		m[a.File] = a.To + ": " + a.Reason
	}
	return m
}

// TestPendingRefusesPlantedRequests: beside a request of the queue's
// owner, a request that is a link to a file elsewhere and one with a
// second name are not acted on: the runner sets them aside into bad/.
// As root, a request of another owner is set aside too.
func TestPendingRefusesPlantedRequests(t *testing.T) {
	q := newQueue(t)
	ctl := filepath.Join(q.Dir, Dir)
	if err := q.SideDir(Dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctl, "good.req"), FormatRequest(Hold, []queue.ID{1}), 0o640)
	elsewhere := filepath.Join(t.TempDir(), "x.req")
	os.WriteFile(elsewhere, FormatRequest(Remove, []queue.ID{1}), 0o640)
	os.Symlink(elsewhere, filepath.Join(ctl, "linked.req"))
	os.Link(elsewhere, filepath.Join(ctl, "hard.req"))
	want := map[string]string{"ctl/linked.req": "a symbolic link", "ctl/hard.req": "a hard link"}
	if os.Geteuid() == 0 {
		os.WriteFile(filepath.Join(ctl, "foreign.req"), FormatRequest(Remove, []queue.ID{1}), 0o640)
		os.Chown(filepath.Join(ctl, "foreign.req"), 65534, 65534)
		want["ctl/foreign.req"] = "owned by uid 65534"
	}
	rqs := Pending(q)
	if len(rqs) != 1 || rqs[0].Name != "good" || rqs[0].Action != Hold {
		t.Errorf("pending %+v, want only good", rqs)
	}
	aside := asideOf(q)
	for file, why := range want {
		if !strings.Contains(aside[file], why) {
			t.Errorf("%s set aside as %q, want %q", file, aside[file], why)
		}
	}
	if b, err := os.ReadFile(elsewhere); err != nil || !strings.HasPrefix(string(b), "remove") {
		t.Errorf("the file behind the link: %q, %v", b, err)
	}
}

// TestPendingSetsAsideLinkedCtl: ctl/ replaced by a link to a directory
// holding a request: nothing is read there; the link goes to bad/ and a
// tool's next request makes a new ctl/.
func TestPendingSetsAsideLinkedCtl(t *testing.T) {
	q := newQueue(t)
	elsewhere := t.TempDir()
	os.WriteFile(filepath.Join(elsewhere, "evil.req"), FormatRequest(Remove, []queue.ID{1}), 0o640)
	if err := os.Symlink(elsewhere, filepath.Join(q.Dir, Dir)); err != nil {
		t.Fatal(err)
	}
	if rqs := Pending(q); len(rqs) != 0 {
		t.Errorf("pending %+v through a linked ctl/", rqs)
	}
	if a := asideOf(q); !strings.Contains(a["ctl"], "bad/ctl: not a directory but a symbolic link") {
		t.Errorf("set aside %v", a)
	}
	if fi, err := os.Lstat(filepath.Join(q.Dir, "bad", "ctl")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("bad/ctl is not the link: %v", err)
	}
	if err := q.SideDir(Dir); err != nil {
		t.Errorf("a new ctl/ after the link went: %v", err)
	}
}

// TestAskRefusesLinkedCtl: gw-qctl finds ctl/ a link: it writes nothing
// there and says why.
func TestAskRefusesLinkedCtl(t *testing.T) {
	q := newQueue(t)
	elsewhere := t.TempDir()
	os.Symlink(elsewhere, filepath.Join(q.Dir, Dir))
	_, err := ask(q, Hold, []queue.ID{1}, time.Second)
	if !errors.Is(err, queue.ErrUnsafe) || !strings.Contains(err.Error(), "ctl: not a directory but a symbolic link") {
		t.Errorf("ask with a linked ctl/: %v", err)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("written through the link: %v", ents)
	}
}
