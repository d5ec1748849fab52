package tests

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUsageErrorsAsTyped: every program names an unknown option as it was
// typed (--bogus, not -bogus), behind "usage:", and exits 100, whether the
// option follows the program or one of its commands.
func TestUsageErrorsAsTyped(t *testing.T) {
	programs, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	runs := [][]string{{"gw-qstat", "list", "--bogus"}, {"gw-instance", "config", "--bogus"}}
	for _, p := range programs {
		runs = append(runs, []string{p.Name(), "--bogus"})
	}
	for _, argv := range runs {
		out, err := exec.Command(bin(argv[0]), argv[1:]...).CombinedOutput()
		if code := exitCode(err); code != 100 || !strings.Contains(string(out), argv[0]+": fatal: usage: flag provided but not defined: --bogus\n") {
			t.Errorf("%s: exit %d:\n%s", strings.Join(argv, " "), code, out)
		}
	}
}

// TestQueuedModeOctal: gw-queued's --mode reads and shows octal, as chmod
// does: its default shows as 0660, and "660" means 0660.
func TestQueuedModeOctal(t *testing.T) {
	help, _ := exec.Command(bin("gw-queued"), "--help").CombinedOutput()
	if !strings.Contains(string(help), `(default: "0660")`) {
		t.Errorf("gw-queued --help does not show the mode in octal:\n%s", help)
	}
	qdir := workDir(t) + "/queue"
	initQueue(t, qdir)
	sock := qdir + "/lock/test.sock"
	cmd := exec.Command(bin("gw-queued"), "--queue", qdir, "--socket", sock, "--mode", "640")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	found := false
	for i := 0; i < 200 && !found; i++ {
		if st, err := os.Stat(sock); err == nil {
			found = true
			if got := st.Mode().Perm(); got != 0o640 {
				t.Errorf("--mode 640 made the socket %#o", got)
			}
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !found {
		t.Fatalf("gw-queued made no socket %s", sock)
	}
	out, err := exec.Command(bin("gw-queued"), "--queue", qdir, "--mode", "999").CombinedOutput()
	if exitCode(err) != 100 || !strings.Contains(string(out), "want octal permissions") {
		t.Errorf("--mode 999: %v: %s", err, out)
	}
}
