package tests

// The directories of a queue, played as an attacker would: the queue user
// puts a link in place of ctl/ or a request of another owner into it, and
// a directory above the queue is left open to all. Each is refused with
// one line that names it, and no message is lost or acted on.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ctlInstance is a gw-send instance whose queue belongs to the queue user
// and holds one message the receiver defers (later@), so that it stays.
func ctlInstance(t *testing.T) (in *sendInstance, id string, uid, gid int) {
	t.Helper()
	uid, gid = queueUser(t)
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in = newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	id = in.inject(t, "a@sender.test", []string{"later@good.test"}, "Subject: kept\n\nx\n")
	giveQueue(t, in.queue, uid, gid)
	return in, id, uid, gid
}

// rootsDir is a directory of root's with one file in it, for a link to
// point at; untouched reports what changed there.
func rootsDir(t *testing.T, parent string) (dir string, untouched func() string) {
	t.Helper()
	dir = filepath.Join(parent, "roots")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "keep"), []byte("root's\n"), 0o600)
	return dir, func() string {
		ents, _ := os.ReadDir(dir)
		b, _ := os.ReadFile(filepath.Join(dir, "keep"))
		if len(ents) != 1 || string(b) != "root's\n" {
			return fmt.Sprintf("root's directory now holds %d entries, keep=%q", len(ents), b)
		}
		return ""
	}
}

// holdRunnerLock takes the queue's runner lock, as a running gw-send
// holds it, so that gw-qctl must go through ctl/.
func holdRunnerLock(t *testing.T, queueDir string, uid, gid int) (release func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(queueDir, "lock", "runner"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.Chown(uid, gid) // the queue user's, as gw-send makes it
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// oneLine checks that out is one line holding every one of want.
func oneLine(t *testing.T, what, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range want {
		if len(lines) != 1 || !strings.Contains(lines[0], w) {
			t.Errorf("%s: %q, want one line with %q", what, out, w)
		}
	}
}

// TestCtlLinkIsRefused: the queue user replaces ctl/ by a link to a
// directory of root's. gw-qctl as root, beside a runner, refuses with one
// line and writes nothing there; gw-send sets the link aside into bad/
// and names it; then gw-qctl works through a new ctl/, the message held.
func TestCtlLinkIsRefused(t *testing.T) {
	in, id, uid, gid := ctlInstance(t)
	roots, untouched := rootsDir(t, in.dir)
	ctl := filepath.Join(in.queue, "ctl")
	os.RemoveAll(ctl)
	if err := os.Symlink(roots, ctl); err != nil {
		t.Fatal(err)
	}
	os.Lchown(ctl, uid, gid)

	release := holdRunnerLock(t, in.queue, uid, gid)
	out, code := qctl(t, in.queue, "--wait", "2s", "hold", id)
	release()
	if code != 111 {
		t.Errorf("gw-qctl hold with ctl/ a link: exit %d, want 111", code)
	}
	oneLine(t, "gw-qctl with ctl/ a link", out, in.queue+": ctl: not a directory but a symbolic link")
	if s := untouched(); s != "" {
		t.Fatal(s)
	}

	in.start(t)
	waitFor(t, "gw-send to set the link aside", 5*time.Second, func() bool {
		return len(in.lines("setaside", "file=ctl", "to=bad/ctl", "symbolic link")) == 1
	})
	if fi, err := os.Lstat(filepath.Join(in.queue, "bad", "ctl")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("bad/ctl is not the attacker's link: %v", err)
	}
	if out, code := qctl(t, in.queue, "--wait", "10s", "hold", id); code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl hold after the link went: exit %d, %q", code, out)
	}
	if !snapshotHeld(t, in.queue, id) {
		t.Errorf("message %s not held", id)
	}
	if s := untouched(); s != "" {
		t.Error(s)
	}
}

// TestCtlForeignRequestIsRefused: a request to remove the message, in
// ctl/ but owned by another user than the queue's. gw-send does not act
// on it: it sets it aside with one line naming the file and its owner,
// answers nothing, and the message stays queued.
func TestCtlForeignRequestIsRefused(t *testing.T) {
	in, id, uid, gid := ctlInstance(t)
	ctl := filepath.Join(in.queue, "ctl")
	os.Mkdir(ctl, 0o750)
	os.Chown(ctl, uid, gid)
	nobody, _ := ids(t, "nobody")
	req := filepath.Join(ctl, "evil.req")
	if err := os.WriteFile(req, []byte("remove\n"+id+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(req, nobody, nobody)

	in.start(t)
	waitFor(t, "gw-send to set the request aside", 5*time.Second, func() bool {
		return len(in.lines("setaside", "file=ctl/evil.req")) == 1
	})
	oneLine(t, "the set-aside line", strings.Join(in.lines("setaside"), "\n"),
		"file=ctl/evil.req to=bad/evil.req", fmt.Sprintf("owned by uid %d, not by the queue's owner (uid %d)", nobody, uid))
	if _, err := os.Lstat(filepath.Join(ctl, "evil.done")); err == nil {
		t.Error("gw-send answered the foreign request")
	}
	if n := len(in.lines("ctl")); n != 0 {
		t.Errorf("gw-send took %d requests: %q", n, in.lines("ctl"))
	}
	found := false
	for _, m := range snapshot(t, in.queue).Messages {
		found = found || m.ID.String() == id
	}
	if !found {
		t.Fatalf("message %s removed by a request of uid %d", id, nobody)
	}
}

// TestQueueParentOpenToAll: the directory that holds queue/ is made
// writable by all, so anyone could put a queue of their own in its place.
// gw-send, gw-qctl and gw-qstat each refuse with one line naming that
// directory; put back, gw-send starts and the message is still there.
func TestQueueParentOpenToAll(t *testing.T) {
	in, id, _, _ := ctlInstance(t)
	if err := os.Chmod(in.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	why := in.dir + ", a directory above it, is writable by group and others (mode 0777)"
	code, stderr := runBriefly(t, []string{bin("gw-send"), "--queue", in.queue, "--control-dir", in.control})
	if code != 111 {
		t.Errorf("gw-send below a directory open to all: exit %d, want 111", code)
	}
	// gw-send checks its state directory (state/send, beside the queue)
	// before the queue; either names the directory open to all.
	oneLine(t, "gw-send", stderr, why)
	out, code := qctl(t, in.queue, "hold", id)
	if code != 111 {
		t.Errorf("gw-qctl below a directory open to all: exit %d, want 111", code)
	}
	oneLine(t, "gw-qctl", out, why)
	qs := exec.Command(bin("gw-qstat"), "--queue", in.queue)
	qout, err := qs.CombinedOutput()
	if err == nil {
		t.Errorf("gw-qstat below a directory open to all succeeded: %q", qout)
	}
	oneLine(t, "gw-qstat", string(qout), why)

	os.Chmod(in.dir, 0o755)
	in.start(t)
	waitFor(t, "the message tried again", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
}

// TestQueueSubdirLinkIsRefused: the queue user moves journal/ away and
// puts a link to a directory of its own in its place, where a journal
// that says the message was removed waits. gw-send, gw-qctl and gw-qstat
// each refuse the queue with one line naming journal/; put back, the
// message is still queued.
func TestQueueSubdirLinkIsRefused(t *testing.T) {
	uid, gid := queueUser(t)
	dir := workDir(t)
	qdir := filepath.Join(dir, "queue")
	id, _ := queueWith(t, qdir, "later@good.test")
	os.MkdirAll(filepath.Join(dir, "control"), 0o755)
	os.WriteFile(filepath.Join(dir, "control", "me"), []byte("gw.test\n"), 0o644)
	giveQueue(t, qdir, uid, gid)
	journal := filepath.Join(qdir, "journal")
	moved := filepath.Join(qdir, "journal.real")
	if err := os.Rename(journal, moved); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(dir, "theirs")
	os.Mkdir(theirs, 0o750)
	os.Chown(theirs, uid, gid)
	if err := os.Symlink(theirs, journal); err != nil {
		t.Fatal(err)
	}
	os.Lchown(journal, uid, gid)

	why := "journal: not a directory but a symbolic link"
	code, stderr := runBriefly(t, []string{bin("gw-send"), "--queue", qdir, "--control-dir", filepath.Join(dir, "control")})
	if code != 111 {
		t.Errorf("gw-send with journal/ a link: exit %d, want 111", code)
	}
	oneLine(t, "gw-send", stderr, qdir, why)
	out, code := qctl(t, qdir, "hold", id)
	if code != 111 {
		t.Errorf("gw-qctl with journal/ a link: exit %d, want 111", code)
	}
	oneLine(t, "gw-qctl", out, why)
	qout, err := exec.Command(bin("gw-qstat"), "--queue", qdir).CombinedOutput()
	if err == nil {
		t.Errorf("gw-qstat with journal/ a link succeeded: %q", qout)
	}
	oneLine(t, "gw-qstat", string(qout), why)
	if ents, _ := os.ReadDir(theirs); len(ents) != 0 {
		t.Errorf("written into the linked journal/: %v", ents)
	}

	os.Remove(journal)
	os.Rename(moved, journal)
	found := false
	for _, m := range snapshot(t, qdir).Messages {
		found = found || m.ID.String() == id
	}
	if !found {
		t.Fatalf("message %s gone", id)
	}
}
