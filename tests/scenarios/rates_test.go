package scenarios

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRatesOutliveRestart: an instance made by gw-instance, its listener
// under runsvdir running as nobody, keeps its rate counts in
// state/smtpd/rates-smtpd.db. The client may send two messages an hour
// (RATE_MSG in the listener's rules); after two, the listener is
// restarted, and the third is still refused: the counts were on disk, not
// in the process that ended.
//
// A run script as an older gw wrote it (no --rates) is named by
// gw-instance check, and gw-instance services writes it anew.
func TestRatesOutliveRestart(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	mxAddr := freePort(t, "127.0.0.1")
	mailhost := startSink(t, filepath.Join(dir, "mailhost"), freePort(t, "127.0.0.20"))
	d := filepath.Join(root, "mx")
	gwInstance(t, root, "create", "mx", "--smtp", mxAddr, "--me", "mx.example.test", "--rcpthosts", "example.test",
		"--user", "smtpd:nobody")
	write(t, d, map[string]string{
		"acl/tcp.smtp":       `127.:allow,RATE_MSG="2/3600s"` + "\n",
		"control/smtproutes": "example.test:" + mailhost.addr + "\n",
	})
	gwInstance(t, root, "services", "mx") // compiles the changed rules

	run := filepath.Join(d, "service", "smtpd", "run")
	script := readFile(t, run)
	rates := filepath.Join(d, "state", "smtpd", "rates-smtpd.db")
	if !strings.Contains(script, "--rates "+rates) {
		t.Fatalf("smtpd/run names no --rates %s:\n%s", rates, script)
	}
	// An older gw's script: check names it, services mends it.
	os.WriteFile(run, []byte(regexp.MustCompile(` --rates \S+`).ReplaceAllString(script, "")), 0o755)
	out, err := runGwInstance(root, "check", "mx")
	if err == nil || !strings.Contains(out, "service smtpd: run gives no --rates") {
		t.Fatalf("gw-instance check of an old run script: %v\n%s", err, out)
	}
	gwInstance(t, root, "services", "mx")
	gwInstance(t, root, "check", "mx")

	sup := startSupervisor(t, "runit", dir)
	gwInstance(t, root, "link", "mx", sup.scan)
	sup.up(t, 3)
	waitFor(t, "the listener", 10*time.Second, func() bool { return listening(mxAddr) })

	mustSend(t, mxAddr, "a@elsewhere.test", "alice@example.test", "first")
	mustSend(t, mxAddr, "a@elsewhere.test", "alice@example.test", "second")

	pid := func() string {
		b, _ := os.ReadFile(filepath.Join(sup.scan, "mx-smtpd", "supervise", "pid"))
		return strings.TrimSpace(string(b))
	}
	before := pid()
	sup.control(t, "mx-smtpd", "restart")
	waitFor(t, "a new gw-smtpd", 20*time.Second, func() bool { p := pid(); return p != "" && p != before })
	waitFor(t, "the listener again", 10*time.Second, func() bool { return listening(mxAddr) })

	mustRefuse(t, mxAddr, "a@elsewhere.test", "alice@example.test", "451 4.7.0")
	expectAt(t, mailhost, "first", "alice@example.test")
	expectAt(t, mailhost, "second", "alice@example.test")
	waitFor(t, "the queue to empty", 20*time.Second, func() bool { return queued(t, root, "mx") == 0 })
	if n := len(mailhost.messages(t)); n != 2 {
		t.Errorf("the mail host holds %d messages, want the 2 accepted", n)
	}
}

// runGwInstance runs gw-instance and returns its output and error, for a
// command that is to fail.
func runGwInstance(root string, args ...string) (string, error) {
	out, err := exec.Command(bin("gw-instance"), append([]string{"--root", root}, args...)...).CombinedOutput()
	return string(out), err
}
