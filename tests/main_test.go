// Package tests holds gw's end-to-end tests: they build the real programs
// once, then drive them over real pipes, sockets and files, with the real
// peers (ucspi-tcp, strace, …) that scripts/test-peers.sh installs.
//
// A test that needs a peer which is not installed fails; it never skips.
// On failure a test keeps its working directory and prints its path.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the programs built for this run.
var binDir string

// afterAll holds what tests started once for the whole run (scanners) and
// that TestMain stops after the last test.
var afterAll []func()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gw-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", dir+"/", "gw/cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building the programs:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	for _, f := range afterAll {
		f()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin returns the path of the built program name.
func bin(name string) string { return filepath.Join(binDir, name) }

// need fails the test unless the peer program is on PATH: peers are
// installed by scripts/test-peers.sh, and a missing one is a failure.
func need(t *testing.T, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		t.Fatalf("peer %s is not installed (run make peers): %v", program, err)
	}
	return p
}

// workDir returns a fresh directory that is removed when the test passes
// and kept, with its path printed, when it fails.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gw-e2e-"+sanitize(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept working directory %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
