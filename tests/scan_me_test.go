package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanRefusesWithoutMe: gw-scan, like gw-smtpd and gw-qmtpd, will not
// run without control/me rather than name the host "localhost" in the
// headers it adds. As a wrapper it exits 55 (a temporary refusal: the
// message waits at the client) and queues nothing.
func TestScanRefusesWithoutMe(t *testing.T) {
	dir := workDir(t)
	control, qdir := filepath.Join(dir, "control"), filepath.Join(dir, "queue")
	if err := os.MkdirAll(control, 0o755); err != nil {
		t.Fatal(err)
	}
	initQueue(t, qdir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("Fa@example.org\x00Tb@example.com\x00\x00")
	w.Close()
	defer r.Close()
	cmd := exec.Command(bin("gw-scan"), "--control-dir", control)
	cmd.Env = append(os.Environ(), "GW_QUEUE="+qdir)
	cmd.Stdin = strings.NewReader("Subject: x\n\nx\n")
	cmd.Stdout = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 55 {
		t.Fatalf("gw-scan without control/me: %v, want exit 55; log: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "control/me is missing") {
		t.Errorf("gw-scan's log does not say why: %q", stderr.String())
	}
	out, errs := qstatRun(t, nil, 0, "--queue", qdir)
	if !strings.Contains(out, "messages in queue: 0\n") {
		t.Errorf("something was queued:\n%s%s", out, errs)
	}
}
