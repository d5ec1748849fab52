package instance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileMakesItsTempAnew: a daemon's user owns state/ and puts a
// link at the temp name writeFile uses (state/run.pid.tmp) to a file of
// root's; gw-instance run, as root, writes its pid file. The file behind
// the link keeps its content and its mode; the pid file is a new file.
func TestWriteFileMakesItsTempAnew(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "shadow")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o750)
	pid := filepath.Join(state, "run.pid")
	if err := os.Symlink(victim, pid+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(pid, "42\n", 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
		t.Errorf("written through the link: %q", b)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Errorf("the file behind the link is now mode %04o", fi.Mode().Perm())
	}
	fi, err := os.Lstat(pid)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("run.pid: %v, %v", fi, err)
	}
	if b, _ := os.ReadFile(pid); string(b) != "42\n" {
		t.Errorf("run.pid holds %q", b)
	}
}

// TestCheckNamesUnsafeQueueDirs: a queue subdirectory replaced by a link
// makes gw-send and the queue tools refuse the queue; check says so.
func TestCheckNamesUnsafeQueueDirs(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, Flavour: "runit", BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(in.Check(), "\n"); strings.Contains(got, "refused") {
		t.Fatalf("a new instance: %s", got)
	}
	seg := filepath.Join(in.Queue(), "seg")
	os.Rename(seg, seg+".real")
	os.Symlink(seg+".real", seg)
	got := strings.Join(in.Check(), "\n")
	if !strings.Contains(got, "queue/ is refused by gw-send and the queue tools: "+in.Queue()+": seg: not a directory but a symbolic link") {
		t.Errorf("check says:\n%s", got)
	}
}
