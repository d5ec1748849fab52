package instance

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A test binary started with GW_TEST_POSE_AS_RUN set only waits: under the
// argv of gw-instance run it stands for a run of an instance.
func init() {
	if os.Getenv("GW_TEST_POSE_AS_RUN") != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
}

// poseAsRun starts a process whose command line is argv.
func poseAsRun(t *testing.T, argv ...string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = argv
	cmd.Env = append(os.Environ(), "GW_TEST_POSE_AS_RUN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// TestRunPIDIsReadAsFromAStranger: a pid file names gw-instance run of
// this instance or is ignored, with the reason.
func TestRunPIDIsReadAsFromAStranger(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "main", Options{Me: "gw.test", BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	pidFile := in.Path("state", "run.pid")
	plant := func(pid int) {
		os.Remove(pidFile)
		os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	}
	run := poseAsRun(t, "/usr/local/bin/gw-instance", "--root", root, "run", "main")
	other := poseAsRun(t, "/usr/local/bin/gw-instance", "--root", t.TempDir(), "run", "main")
	sleeper := poseAsRun(t, "sleep", "3600")
	for _, c := range []struct {
		what    string
		prepare func()
		pid     int
		why     string
	}{
		{"no file", func() { os.Remove(pidFile) }, 0, ""},
		{"this instance's run", func() { plant(run) }, run, ""},
		{"another instance's run", func() { plant(other) }, 0, "is not gw-instance run of instance main"},
		{"any live process", func() { plant(sleeper) }, 0, "is not gw-instance run of instance main"},
		{"a pid that is gone", func() { plant(1 << 22) }, 0, ""},
		{"no number", func() { os.WriteFile(pidFile, []byte("x\n"), 0o644) }, 0, `"x" is no pid`},
		{"a link to a pid file", func() {
			os.Remove(pidFile)
			elsewhere := in.Path("state", "send", "pid")
			os.WriteFile(elsewhere, []byte(strconv.Itoa(run)), 0o644)
			os.Symlink(elsewhere, pidFile)
		}, 0, "too many levels of symbolic links"},
	} {
		c.prepare()
		pid, why := in.readRunPID()
		if pid != c.pid || (c.why == "" && why != "") || !strings.Contains(why, c.why) {
			t.Errorf("%s: pid %d (%q), want %d (%q)", c.what, pid, why, c.pid, c.why)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	plant(run)
	os.Chown(pidFile, 65534, 65534)
	if pid, why := in.readRunPID(); pid != 0 || !strings.Contains(why, "owned by uid 65534") {
		t.Errorf("a pid file of nobody's: pid %d (%q)", pid, why)
	}
}
