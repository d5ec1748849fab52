package tests

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var updateEtc = flag.Bool("update-etc", false, "rewrite etc/main from gw-instance create (the comments added by hand are lost: read the diff)")

// etcCreate is the command line etc/main was made with; etc/README says
// so, and the test runs it again under a scratch root.
var etcCreate = []string{"create", "main", "--me", "mx.example.com", "--rcpthosts", "example.com", "--rcpthosts", ".example.com",
	"--smtp", "0.0.0.0:25", "--qmtp", "127.0.0.1:209", "--bin-dir", "/usr/local/bin"}

// TestEtcSample keeps the sample instance in etc/main in step with what
// gw-instance create writes: the same files (compiled databases and the
// queue aside), the same lines once the comments are set aside, paths
// under /var/gw as the default root puts them.
func TestEtcSample(t *testing.T) {
	root := workDir(t)
	cmd := exec.Command(bin("gw-instance"), append([]string{"--root", root}, etcCreate...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gw-instance create: %v\n%s", err, out)
	}
	made := sampleFiles(t, filepath.Join(root, "main"), func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(root+"/"), []byte("/var/gw/"))
	})
	sample := sampleFiles(t, "../etc/main", nil)
	if *updateEtc {
		for name, b := range made {
			p := filepath.Join("../etc/main", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(0o644)
			if filepath.Base(name) == "run" {
				mode = 0o755 // run scripts, as supervise needs them
			}
			if err := os.WriteFile(p, b, mode); err != nil {
				t.Fatal(err)
			}
		}
		sample = made
	}
	var names []string
	for name := range made {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, ok := sample[name]
		if !ok {
			t.Errorf("etc/main/%s: gw-instance create writes it, the sample lacks it", name)
			continue
		}
		if a, b := uncommented(got), uncommented(made[name]); a != b {
			t.Errorf("etc/main/%s differs from what gw-instance create writes:\nsample:\n%s\ncreate:\n%s", name, a, b)
		}
	}
	for name := range sample {
		if _, ok := made[name]; !ok {
			t.Errorf("etc/main/%s: gw-instance create does not write it", name)
		}
	}
}

// sampleFiles reads the files of an instance that a sample shows: not the
// compiled ACL databases, not the queue.
func sampleFiles(t *testing.T, dir string, edit func([]byte) []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasSuffix(rel, ".db") || strings.HasPrefix(rel, "queue/") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if edit != nil {
			b = edit(b)
		}
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// uncommented returns b without its comment lines, which the sample may
// add to and the programs skip.
func uncommented(b []byte) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
