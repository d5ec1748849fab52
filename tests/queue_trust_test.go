package tests

// What a foothold as the queue user, or as any local user next to a
// setuid gw-queue, can do to a queue and to root: each test plays the
// attacker, then checks that nothing crossed over.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// queueUserName is the unprivileged owner of the queues these tests make.
const queueUserName = "gwqtest"

var queueUserOnce sync.Once

// queueUser returns the uid and gid of the test queue user, made once
// (useradd) if this machine lacks it.
func queueUser(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests change owners and ids: run them as root")
	}
	queueUserOnce.Do(func() {
		if _, err := user.Lookup(queueUserName); err != nil {
			out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group",
				"--shell", "/usr/sbin/nologin", queueUserName).CombinedOutput()
			if err != nil {
				t.Logf("useradd %s: %v: %s", queueUserName, err, out)
			}
		}
	})
	u, err := user.Lookup(queueUserName)
	if err != nil {
		t.Fatalf("user %s: %v", queueUserName, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// giveQueue makes every file of dir the queue user's, as gw-instance
// create does.
func giveQueue(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// queueWith makes a queue at dir holding one message for rcpt, injected by
// the real gw-queue; it returns the message's id and its segment's path.
func queueWith(t *testing.T, dir, rcpt string) (id, seg string) {
	t.Helper()
	if out, err := exec.Command(bin("gw-queue"), "--init", dir).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v: %s", err, out)
	}
	in := &sendInstance{queue: dir}
	id = in.inject(t, "a@sender.test", []string{rcpt}, "Subject: for "+rcpt+"\n\nsecret\n")
	for _, m := range snapshot(t, dir).Messages {
		if m.ID.String() == id {
			return id, filepath.Join(dir, "seg", m.Segment)
		}
	}
	t.Fatalf("message %s not in %s", id, dir)
	return "", ""
}

// TestQueueLinksAreNotFollowed: the queue user links another queue's
// segment into seg/, once by symbolic link and once by hard link. gw-send
// delivers neither, sets both links aside into bad/ and names them;
// gw-qstat shows them; the other queue's segment is untouched.
func TestQueueLinksAreNotFollowed(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	_, victimSeg := queueWith(t, filepath.Join(in.dir, "other-queue"), "stolen@good.test")
	before, _ := os.ReadFile(victimSeg)

	// The attacker's links, named as segments are.
	sym, hard := "0000000000001", "0000000000002"
	if err := os.Symlink(victimSeg, filepath.Join(in.queue, "seg", sym)); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victimSeg, filepath.Join(in.queue, "seg", hard)); err != nil {
		t.Fatal(err)
	}
	own := in.inject(t, "a@sender.test", []string{"ok@good.test"}, "Subject: own\n\nx\n")

	in.start(t)
	waitFor(t, "the queue's own message", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+own, "result=delivered")) == 1
	})
	for _, name := range []string{sym, hard} {
		if n := len(in.lines("setaside", "file=seg/"+name, "to=bad/"+name)); n != 1 {
			t.Errorf("%d setaside lines for seg/%s, want 1", n, name)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got := rv.received(); len(got) != 1 || got[0].to[0] != "ok@good.test" {
		t.Fatalf("received %+v: a linked segment was delivered", got)
	}
	if fi, err := os.Lstat(filepath.Join(in.queue, "bad", sym)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("bad/%s is not the link the attacker made: %v", sym, err)
	}
	if after, err := os.ReadFile(victimSeg); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the other queue's segment changed: %v", err)
	}
	_, stderr := qstatRun(t, nil, 0, "--queue", in.queue)
	for _, name := range []string{sym, hard} {
		if !strings.Contains(stderr, "bad/"+name) {
			t.Errorf("gw-qstat does not show bad/%s: %q", name, stderr)
		}
	}
}

// TestRootToolsWriteNoLinkedLock: the queue user replaces lock/clock and
// lock/reserve by links to files of root's. gw-qstat and gw-qctl run by
// root (no gw-send running, so gw-qctl takes the runner lock itself) write
// nothing into root's files; gw-qctl sets the links aside and says so.
func TestRootToolsWriteNoLinkedLock(t *testing.T) {
	uid, gid := queueUser(t)
	dir := workDir(t)
	qdir := filepath.Join(dir, "queue")
	id, _ := queueWith(t, qdir, "later@good.test")
	giveQueue(t, qdir, uid, gid)
	rootFiles := map[string]string{"lock/clock": filepath.Join(dir, "root-clock"), "lock/reserve": filepath.Join(dir, "root-reserve")}
	for lock, target := range rootFiles {
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(qdir, lock))
		if err := os.Symlink(target, filepath.Join(qdir, lock)); err != nil {
			t.Fatal(err)
		}
		os.Lchown(filepath.Join(qdir, lock), uid, gid)
	}

	qstatRun(t, nil, 0, "--queue", qdir)
	out, code := qctl(t, qdir, "hold", id)
	if code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl hold as root: exit %d, %q", code, out)
	}
	for lock, target := range rootFiles {
		if fi, err := os.Stat(target); err != nil || fi.Size() != 0 {
			t.Errorf("root's file behind %s was written: size %d, %v", lock, fi.Size(), err)
		}
		if !strings.Contains(out, lock+" set aside as bad/"+filepath.Base(lock)) {
			t.Errorf("gw-qctl does not name %s as set aside: %q", lock, out)
		}
	}
	if !snapshotHeld(t, qdir, id) {
		t.Errorf("message %s not held after gw-qctl said ok", id)
	}
}

func snapshotHeld(t *testing.T, qdir, id string) bool {
	for _, m := range snapshot(t, qdir).Messages {
		if m.ID.String() == id {
			return m.Held
		}
	}
	return false
}

// TestSetuidQueueTakesNoQueueFromEnv: gw-queue installed setuid to the
// queue user; a local user points GW_QUEUE at a queue of their own whose
// lock/clock is a link to a segment of the real queue. gw-queue refuses
// (61, naming GW_QUEUE) and the real queue's message stays whole.
func TestSetuidQueueTakesNoQueueFromEnv(t *testing.T) {
	uid, gid := queueUser(t)
	dir := workDir(t)
	real := filepath.Join(dir, "queue")
	id, seg := queueWith(t, real, "victim@good.test")
	giveQueue(t, real, uid, gid)
	before, _ := os.ReadFile(seg)

	// The setuid install, as qmail-queue is setuid qmailq.
	suid := copyProgram(t, dir, "gw-queue", 0o755)
	os.Chown(suid, uid, gid)
	if err := os.Chmod(suid, 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}

	// The attacker (nobody) builds a queue of their own, world-writable
	// so that the setuid program can write it, with the planted link.
	evil := filepath.Join(dir, "evil")
	if out, err := exec.Command(bin("gw-queue"), "--init", evil).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.Symlink(seg, filepath.Join(evil, "lock", "clock")); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(evil, func(p string, d fs.DirEntry, err error) error {
		os.Lchown(p, 65534, 65534)
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o777)
		}
		return nil
	})

	cmd := exec.Command(suid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"GW_QUEUE=" + evil, "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader("Subject: hi\n\nx\n")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Fa@evil.test\x00Tb@good.test\x00\x00"))
	w.Close()
	cmd.Stdout = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	r.Close()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 61 || !strings.Contains(stderr.String(), "GW_QUEUE") {
		t.Errorf("setuid gw-queue with GW_QUEUE=%s: exit %d (%v), %q; want 61 naming GW_QUEUE", evil, code, err, stderr.String())
	}
	if after, err := os.ReadFile(seg); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the real queue's segment was written through the planted clock: %v", err)
	}
	found := false
	for _, m := range snapshot(t, real).Messages {
		found = found || m.ID.String() == id
	}
	if !found {
		t.Fatalf("message %s is gone from the real queue", id)
	}
}

// TestQctlAsRootBesideSend: gw-send runs as the queue user (its service);
// the sysadmin runs gw-qctl as root, as INSTALL shows. With gw-send
// running gw-qctl gets its answer; with gw-send stopped it acts itself;
// gw-send then starts again and delivers, and every file of the queue is
// still the queue user's.
func TestQctlAsRootBesideSend(t *testing.T) {
	uid, gid := queueUser(t)
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	id := in.inject(t, "a@sender.test", []string{"later@good.test"}, "Subject: deferred\n\nx\n")
	giveQueue(t, in.queue, uid, gid)
	send := copyProgram(t, in.dir, "gw-send", 0o755)
	startAs := func() {
		cmd := exec.Command(send, "--queue", in.queue, "--control-dir", in.control, "--stop-grace", "2s")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Stderr = in.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		in.cmd = cmd
	}

	startAs()
	waitFor(t, "the deferral", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) == 1
	})
	if out, code := qctl(t, in.queue, "--wait", "5s", "hold", id); code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl hold as root with gw-send running: exit %d, %q", code, out)
	}

	in.stop()
	if out, code := qctl(t, in.queue, "release", id); code != 0 || !strings.Contains(out, id+" ok") {
		t.Fatalf("gw-qctl release as root with gw-send stopped: exit %d, %q", code, out)
	}
	if line := filesNotOwned(t, in.queue, uid); line != "" {
		t.Errorf("after gw-qctl as root: %s", line)
	}

	mark := len(in.log.String())
	startAs()
	waitFor(t, "gw-send to start again", 5*time.Second, func() bool {
		return strings.Contains(in.log.String()[mark:], "info start ")
	})
	other := in.inject(t, "a@sender.test", []string{"ok@good.test"}, "Subject: after\n\nx\n")
	waitFor(t, "delivery after the restart", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+other, "result=delivered")) == 1
	})
	if line := filesNotOwned(t, in.queue, uid); line != "" {
		t.Errorf("after the restart: %s", line)
	}
}

// copyProgram copies the built program name into dir, where other users
// may run it (the build directory is root's alone).
func copyProgram(t *testing.T, dir, name string, perm fs.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(bin(name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// filesNotOwned names the files below dir that uid does not own.
func filesNotOwned(t *testing.T, dir string, uid int) string {
	var bad []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
			bad = append(bad, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("files not the queue user's: %v", bad)
}

// TestDamagedSegmentsNamedAtStart: a segment cut short (its writer died)
// and one with a damaged byte are found when gw-send starts, each logged
// by name and moved to bad/, never removed; gw-qstat lists them.
func TestDamagedSegmentsNamedAtStart(t *testing.T) {
	rv := startReceiver(t)
	d := dnsFor(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1")
	in := newSendInstance(t, map[string]string{"smtpport": fmt.Sprint(rv.port), "dnsserver": d.Addr})
	_, seg := queueWith(t, filepath.Join(in.dir, "source"), "copy@good.test")
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	cut, bent := "0000000000005", "0000000000006"
	os.WriteFile(filepath.Join(in.queue, "seg", cut), whole[:len(whole)/2], 0o640)
	damaged := append([]byte(nil), whole...)
	damaged[len(damaged)/2] ^= 0x20
	os.WriteFile(filepath.Join(in.queue, "seg", bent), damaged, 0o640)
	own := in.inject(t, "a@sender.test", []string{"ok@good.test"}, "Subject: own\n\nx\n")

	in.start(t)
	waitFor(t, "the queue's own message", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+own, "result=delivered")) == 1
	})
	for name, why := range map[string]string{cut: "reason=\"ends inside a record", bent: "reason=\"corrupt at offset"} {
		if n := len(in.lines("setaside", "file=seg/"+name, "to=bad/"+name, why)); n != 1 {
			t.Errorf("%d setaside lines for seg/%s with %s, want 1", n, name, why)
		}
		if _, err := os.Stat(filepath.Join(in.queue, "bad", name)); err != nil {
			t.Errorf("bad/%s: %v", name, err)
		}
	}
	if got := rv.received(); len(got) != 1 {
		t.Errorf("received %d messages, want only the queue's own", len(got))
	}
	_, stderr := qstatRun(t, nil, 0, "--queue", in.queue)
	for _, name := range []string{cut, bent} {
		if !strings.Contains(stderr, "bad/"+name) {
			t.Errorf("gw-qstat does not show bad/%s: %q", name, stderr)
		}
	}
}
