package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gwInstanceRun runs gw-instance over root and returns its output and exit
// code.
func gwInstanceRun(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin("gw-instance"), append([]string{"--root", root}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("gw-instance %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// TestInstanceConfig: an admin asks what an instance's settings are, as
// postconf -n and -d answer for Postfix.
func TestInstanceConfig(t *testing.T) {
	root := workDir(t)
	if _, errs, code := gwInstanceRun(t, root, "create", "main", "--me", "gw.example.net", "--smtp", "127.0.0.1:2525"); code != 0 {
		t.Fatalf("create: exit %d: %s", code, errs)
	}
	control := filepath.Join(root, "main", "control")
	for name, v := range map[string]string{"databytes": "10485760\n", "scansecret": "a secret of twenty bytes\n"} {
		if err := os.WriteFile(filepath.Join(control, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// $ gw-instance config -n: what the files set, and only that.
	out, _, code := gwInstanceRun(t, root, "config", "-n")
	for _, want := range []string{"me = gw.example.net", "databytes = 10485760", "rcpthosts = gw.example.net", "scansecret = (set, not shown)"} {
		if !hasLine(out, want) {
			t.Errorf("config -n (exit %d): no line %q in:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "timeoutsmtpd") || strings.Contains(out, "twenty") {
		t.Errorf("config -n shows a default or the secret:\n%s", out)
	}

	// $ gw-instance config main SETTING...: the value in effect, file or default.
	out, _, _ = gwInstanceRun(t, root, "config", "main", "databytes", "timeoutsmtpd", "helohost")
	if want := "databytes = 10485760\nhelohost = gw.example.net\ntimeoutsmtpd = 1200\n"; out != want {
		t.Errorf("config main databytes timeoutsmtpd helohost:\n%s\nwant:\n%s", out, want)
	}
	// $ gw-instance config -d databytes: the default whatever the file says.
	if out, _, _ = gwInstanceRun(t, root, "config", "-d", "databytes"); out != "databytes = 0\n" {
		t.Errorf("config -d databytes: %q", out)
	}
	// A setting gw does not have, an instance that does not exist: exit 100.
	if _, errs, code := gwInstanceRun(t, root, "config", "main", "databyte"); code != 100 || !strings.Contains(errs, `"databyte" is no setting`) {
		t.Errorf("config main databyte: exit %d, %q", code, errs)
	}
	if _, errs, code := gwInstanceRun(t, root, "config", "nosuch"); code != 100 || !strings.Contains(errs, "no instance nosuch") {
		t.Errorf("config nosuch: exit %d, %q", code, errs)
	}

	// One problem is "1 problem".
	if err := os.WriteFile(filepath.Join(control, "timeoutsmtpd"), []byte("soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := gwInstanceRun(t, root, "check", "main"); code != 100 || !strings.Contains(errs, "fatal: 1 problem\n") {
		t.Errorf("check with one problem: exit %d:\n%s", code, errs)
	}
}
