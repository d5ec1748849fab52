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
	"path/filepath"
	"testing"

	"gw/tests/internal/e2e"
)

// binDir holds the programs built for this run.
var binDir string

// afterAll holds what tests started once for the whole run (scanners) and
// that TestMain stops after the last test.
var afterAll []func()

func TestMain(m *testing.M) {
	e2e.LoopbackDNS()
	dir, err := e2e.Build("gw-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
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

// need fails the test unless the peer program is on PATH (e2e.Need).
func need(t *testing.T, program string) string { t.Helper(); return e2e.Need(t, program) }

// workDir returns a fresh directory kept when the test fails (e2e.WorkDir).
func workDir(t *testing.T) string {
	t.Helper()
	return e2e.WorkDir(t, "gw-e2e-"+sanitize(t.Name())+"-")
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
