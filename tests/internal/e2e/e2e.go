// Package e2e is the harness the end-to-end test packages share: it builds
// the real programs once, finds the installed peers, and gives each test a
// working directory kept, with its path printed, when the test fails.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Build builds every program under cmd/ into a new temporary directory
// named after prefix and returns it; the caller removes it.
func Build(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	// Daemons that drop to an unprivileged user run the programs too.
	os.Chmod(dir, 0o755)
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", dir+"/", "gw/cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building the programs: %w", err)
	}
	return dir, nil
}

// Need fails the test unless the peer program is on PATH: peers are
// installed by scripts/test-peers.sh, and a missing one is a failure,
// never a skip.
func Need(t *testing.T, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		t.Fatalf("peer %s is not installed (run make peers): %v", program, err)
	}
	return p
}

// WorkDir returns a fresh directory, readable by the unprivileged users
// daemons may run as; it is removed when the test passes and kept, with
// its path printed, when it fails.
func WorkDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept working directory %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// LoopbackDNS points GW_DNS, unless the test run names a server, at a
// loopback port where none listens, for every gw program the tests start:
// they would otherwise ask the servers of /etc/resolv.conf, which may be
// off the host, and the standalone listeners look up every client's name.
// A query there fails at once. Tests that need answers run their own
// server (lib/dns/dnstest) and name it.
func LoopbackDNS() {
	if _, ok := os.LookupEnv("GW_DNS"); !ok {
		os.Setenv("GW_DNS", "127.0.0.1:1")
	}
}
