package tests

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/scan"
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

// TestQueueToolsTakeInstance: the queue tools an admin types take
// --root and --instance as gw-qstat and gw-send do, not only --queue;
// gw-scan's quarantine commands too, not only --control-dir.
func TestQueueToolsTakeInstance(t *testing.T) {
	root := workDir(t)
	if _, errs, code := gwInstanceRun(t, root, "create", "main", "--me", "gw.test"); code != 0 {
		t.Fatalf("create: %s", errs)
	}
	qdir := root + "/main/queue"
	id, err := qstatInject(qdir, "a@example.org", "b@example.net", "Subject: x\n\nx\n")
	if err != nil {
		t.Fatal(err)
	}
	// $ gw-qctl --root R --instance main hold QID
	out, err := exec.Command(bin("gw-qctl"), "--root", root, "--instance", "main", "--wait", "1s", "hold", id).CombinedOutput()
	if err != nil {
		t.Fatalf("gw-qctl --instance: %v: %s", err, out)
	}
	list, _ := qstatRun(t, nil, 0, "list", "--root", root, "--instance", "main")
	if !strings.Contains(list, "#"+id+" ") || !strings.Contains(list, " held") {
		t.Errorf("gw-qctl --instance main hold did not hold %s:\n%s", id, list)
	}
	out, err = exec.Command(bin("gw-qctl"), "--queue", qdir, "--instance", "main", "release", id).CombinedOutput()
	if exitCode(err) != 100 || !strings.Contains(string(out), "--queue and --instance exclude each other") {
		t.Errorf("gw-qctl --queue --instance: %v: %s", err, out)
	}

	// $ gw-scan --root R --instance main quarantine list: the instance's
	// quarantine/, beside its control/.
	held := scan.NewID()
	q := &scan.QuarantineDir{Dir: root + "/main/quarantine"}
	if err := q.Put(held, "virus", envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net"}}, strings.NewReader("Subject: x\n\nx\n")); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin("gw-scan"), "--root", root, "--instance", "main", "quarantine", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), held) {
		t.Errorf("gw-scan --instance main quarantine list: %v: no %s in:\n%s", err, held, out)
	}
	out, err = exec.Command(bin("gw-scan"), "--root", root, "--instance", "main", "--control-dir", root+"/main/control", "quarantine", "list").CombinedOutput()
	if exitCode(err) != 100 || !strings.Contains(string(out), "--instance and --control-dir exclude each other") {
		t.Errorf("gw-scan --instance --control-dir: %v: %s", err, out)
	}

	// $ gw-queued --root R --instance main: the instance's queue.
	sock := root + "/main/queue/lock/t.sock"
	cmd := exec.Command(bin("gw-queued"), "--root", root, "--instance", "main", "--socket", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 200 {
			t.Fatalf("gw-queued --instance main made no socket %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logErrorKey finds a log call that names its error "error=": gw's log
// lines say err=, and a reader's grep for one should find them all.
var logErrorKey = regexp.MustCompile(`\b(?:Info|Warning|Error|Alert|Log|LogWith|log)\(.*"error", `)

// TestLogLinesSayErr: every log line of every program names an error
// err=, never error=.
func TestLogLinesSayErr(t *testing.T) {
	for _, top := range []string{"../lib", "../cmd"} {
		err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if logErrorKey.MatchString(line) {
					t.Errorf("%s:%d logs error=, not err=: %s", path, i+1, strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
