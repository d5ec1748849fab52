package tests

// state/ tried as the smtpd user would after taking over gw-smtpd: gw-send's
// MTA-STS policies and TLS-RPT results, and the pid file that says the
// instance runs, are out of that user's reach, and where an older layout
// left them in reach they are refused rather than believed.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The smtpd user can neither swap nor empty gw-send's state/send, nor
// write state/ at all, in the layout gw-instance create makes.
func TestListenerCannotTouchSendState(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	state := filepath.Join(in.dir, "state")
	send := filepath.Join(state, "send")
	mustRun(t, "mkdir", filepath.Join(send, "mta-sts"))
	mustRun(t, "chown", trustQueueUser, filepath.Join(send, "mta-sts"))
	for _, attack := range [][]string{
		{"mv", send, filepath.Join(state, "gone")},
		{"mkdir", filepath.Join(state, "send2")},
		{"rm", "-r", filepath.Join(send, "mta-sts")},
		{"sh", "-c", "echo $$ > " + filepath.Join(state, "run.pid")},
	} {
		if out, err := as(t, smtpdUser, attack...); err == nil {
			t.Errorf("as %s, %s: succeeded (%s)", smtpdUser, strings.Join(attack, " "), out)
		}
	}
	if fi, err := os.Stat(filepath.Join(send, "mta-sts")); err != nil || !fi.IsDir() {
		t.Errorf("state/send/mta-sts after the attempts: %v", err)
	}
	if out, err := exec.Command(bin("gw-instance"), "--root", in.root, "check", "gw").CombinedOutput(); err != nil {
		t.Errorf("gw-instance check of the layout create made: %v\n%s", err, out)
	}
}

// In the older layout (state/ the smtpd user's) that user swaps
// state/send for a directory of their own, open to gw-send, where they
// would keep or delete MTA-STS policies at will. gw-send refuses to
// start, in one line; check names the layout; services will not hand the
// swapped directory to the queue user, and once it is removed puts the
// layout right, after which gw-send runs.
func TestSwappedSendStateIsRefused(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	state := filepath.Join(in.dir, "state")
	send := filepath.Join(state, "send")
	smtpdUID, _ := ids(t, smtpdUser)
	os.Chown(state, smtpdUID, -1) // the older layout
	os.Chmod(state, 0o751)
	for _, step := range [][]string{
		{"mv", send, filepath.Join(state, "old")},
		{"mkdir", "-m", "0777", send},
		{"mkdir", "-m", "0777", filepath.Join(send, "mta-sts")},
		{"sh", "-c", `printf '{"id":"x","fetched":9999999999,"policy":"version: STSv1\nmode: none\nmax_age: 31557600\n"}' > ` + filepath.Join(send, "mta-sts", "enforce.test.json")},
	} {
		if out, err := as(t, smtpdUser, step...); err != nil {
			t.Fatalf("as %s, %s: %v\n%s", smtpdUser, strings.Join(step, " "), err, out)
		}
	}

	gwSend := []string{bin("gw-send"), "--queue", filepath.Join(in.dir, "queue"), "--control-dir", filepath.Join(in.dir, "control")}
	code, stderr := runBriefly(t, gwSend)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := "refusing state directory " + send + ": " + state + ", a directory above it, is owned by uid " + strconv.Itoa(smtpdUID)
	if code != 111 || len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("gw-send below a state/ of the smtpd user's: exit %d, stderr %q; want 111 and one line %q", code, stderr, want)
	}

	out, _ := exec.Command(bin("gw-instance"), "--root", in.root, "check", "gw").CombinedOutput()
	if !strings.Contains(string(out), "state/ is owned by uid "+strconv.Itoa(smtpdUID)) {
		t.Errorf("gw-instance check of the older layout:\n%s", out)
	}
	out, err := exec.Command(bin("gw-instance"), "--root", in.root, "services", "gw").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "state/send is owned by uid "+strconv.Itoa(smtpdUID)+", neither root nor its user "+trustQueueUser) {
		t.Errorf("gw-instance services over the swapped state/send: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(send, "mta-sts", "enforce.test.json")); err != nil || fileOwner(fi) != smtpdUID {
		t.Errorf("the planted policy after services: %v, owner %d; want it left as the smtpd user's", err, fileOwner(fi))
	}

	// The administrator removes what the smtpd user made.
	mustRun(t, "rm", "-r", send)
	mustRun(t, bin("gw-instance"), "--root", in.root, "services", "gw")
	if fi, err := os.Stat(state); err != nil || fileOwner(fi) != 0 {
		t.Errorf("state/ after services: %v, owner %d; want root's", err, fileOwner(fi))
	}
	if out, err := as(t, smtpdUser, "mkdir", filepath.Join(state, "send2")); err == nil {
		t.Errorf("after services, the smtpd user still writes state/: %s", out)
	}
	if code, stderr := runBriefly(t, gwSend); code != -1 {
		t.Errorf("gw-send on the layout put right: exit %d, stderr %q; want it running", code, stderr)
	}
}

// A run.pid naming a live process that is not gw-instance run of the
// instance keeps nobody out: one planted by the smtpd user in the older
// layout (then kept as theirs when services gave state/ to root), or a
// stale one of root's whose pid another process now has. run starts with
// one warning that names the file; the pid file of that run is believed,
// and a second run is refused.
func TestPlantedRunPIDIsIgnored(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	state := filepath.Join(in.dir, "state")
	pidFile := filepath.Join(state, "run.pid")
	smtpdUID, _ := ids(t, smtpdUser)
	uid, gid := ids(t, smtpdUser)
	sleeper := exec.Command(need(t, "setpriv"), "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "--", "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	os.Chown(state, smtpdUID, -1) // the older layout
	if out, err := as(t, smtpdUser, "sh", "-c", "echo "+strconv.Itoa(sleeper.Process.Pid)+" > "+pidFile); err != nil {
		t.Fatalf("as %s, plant run.pid: %v\n%s", smtpdUser, err, out)
	}
	mustRun(t, bin("gw-instance"), "--root", in.root, "services", "gw")
	in.start(t)
	waitFor(t, "the warning about the planted run.pid", 10*time.Second, func() bool {
		b, _ := os.ReadFile(in.log)
		return strings.Contains(string(b), "warning: ignoring "+pidFile+": owned by uid "+strconv.Itoa(smtpdUID))
	})
	second := exec.Command(bin("gw-instance"), "--root", in.root, "run", "gw")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "runs already (gw-instance run, pid "+strconv.Itoa(in.run.Process.Pid)+")") {
		t.Errorf("a second run while the first runs: %v\n%s", err, out)
	}
	in.run.Process.Signal(syscall.SIGTERM)
	in.run.Wait()

	// Root's stale file, its pid now another process's.
	os.WriteFile(pidFile, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644)
	in.start(t)
	waitFor(t, "the warning about the stale run.pid", 10*time.Second, func() bool {
		b, _ := os.ReadFile(in.log)
		return strings.Contains(string(b), "warning: ignoring "+pidFile+": pid "+strconv.Itoa(sleeper.Process.Pid)+" is not gw-instance run of instance gw")
	})
}

func fileOwner(fi os.FileInfo) int {
	if fi == nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// The smtpd user links its dmarc.db to a file of root's; gw-dmarc, run
// by root from cron, would have bbolt write its pages into it. It refuses
// the link in one line and the file stays as it was.
func TestDMARCReportFollowsNoLinkOfTheListener(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	rootFile := filepath.Join(in.root, "root-owned")
	if err := os.WriteFile(rootFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	smtpdState := filepath.Join(in.dir, "state", "smtpd")
	if out, err := as(t, smtpdUser, "ln", "-s", rootFile, filepath.Join(smtpdState, "dmarc.db")); err != nil {
		t.Fatalf("as %s, ln -s: %v\n%s", smtpdUser, err, out)
	}
	code, stderr := runBriefly(t, []string{bin("gw-dmarc"), "--control-dir", filepath.Join(in.dir, "control"), "--state-dir", smtpdState, "report"})
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 111 || len(lines) != 1 || !strings.Contains(lines[0], "too many levels of symbolic links") {
		t.Errorf("gw-dmarc report over a linked dmarc.db: exit %d, stderr %q; want 111 and one line", code, stderr)
	}
	if fi, err := os.Stat(rootFile); err != nil || fi.Size() != 0 {
		t.Errorf("root's file after gw-dmarc: %v, size %d; want it empty as it was", err, fi.Size())
	}
}
