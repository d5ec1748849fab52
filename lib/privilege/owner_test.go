package privilege

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBecomeOwnerOf runs a child (this test binary) as root that becomes
// the owner of a directory of uid and gid 65534, then reads every one of
// its threads' ids from /proc: the switch must hold on all of them.
func TestBecomeOwnerOf(t *testing.T) {
	if dir := os.Getenv("GW_TEST_BECOME"); dir != "" {
		uid, gid, err := BecomeOwnerOf(dir)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("became", uid, gid)
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") || strings.HasPrefix(l, "Groups:") {
					fmt.Println(strings.Join(strings.Fields(l), " "))
				}
			}
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test switches ids: run it as root")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestBecomeOwnerOf$")
	cmd.Env = append(os.Environ(), "GW_TEST_BECOME="+dir, "GOMAXPROCS=4")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != "became 65534 65534" {
		t.Fatalf("child says %q", lines[0])
	}
	threads := 0
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "Uid:"):
			threads++
			if l != "Uid: 65534 65534 65534 65534" {
				t.Errorf("a thread has %q", l)
			}
		case strings.HasPrefix(l, "Gid:"):
			if l != "Gid: 65534 65534 65534 65534" {
				t.Errorf("a thread has %q", l)
			}
		case strings.HasPrefix(l, "Groups:"):
			if l != "Groups:" {
				t.Errorf("a thread keeps supplementary groups: %q", l)
			}
		}
	}
	if threads < 2 {
		t.Errorf("child had %d threads; the check needs several", threads)
	}
}

// TestBecomeOwnerOfRootDir: a directory of root's leaves root as it is.
func TestBecomeOwnerOfRootDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run it as root")
	}
	if uid, _, err := BecomeOwnerOf(t.TempDir()); err != nil || uid != 0 || os.Geteuid() != 0 {
		t.Fatalf("uid %d, %v", uid, err)
	}
}

// TestSecureNotSetuid: a test binary run by its owner is not secure.
func TestSecureNotSetuid(t *testing.T) {
	if Secure() {
		t.Fatal("Secure() in a plain process")
	}
}
