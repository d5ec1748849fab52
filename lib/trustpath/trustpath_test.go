package trustpath

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestModes(t *testing.T) {
	dir := t.TempDir()
	control := filepath.Join(dir, "control")
	os.Mkdir(control, 0o755)
	os.WriteFile(filepath.Join(control, "me"), []byte("mx.test\n"), 0o644)
	if err := Dir("control directory", control); err != nil {
		t.Fatalf("a 0755 directory of 0644 files: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{control, 0o777, "writable by group and others (mode 0777)"},
		{control, 0o775, "writable by its group (mode 0775)"},
		{filepath.Join(control, "me"), 0o646, "writable by others (mode 0646)"},
	} {
		os.Chmod(c.path, c.mode)
		err := Dir("control directory", control)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s at %04o: %v, want %q", c.path, c.mode, err, c.want)
		}
		os.Chmod(c.path, map[bool]os.FileMode{true: 0o755, false: 0o644}[c.path == control])
	}
}

// Sockets and FIFOs in a checked directory are meant for their group.
func TestFIFOPasses(t *testing.T) {
	dir := t.TempDir()
	if err := mkfifo(filepath.Join(dir, "trigger"), 0o620); err != nil {
		t.Fatal(err)
	}
	if err := Dir("queue", dir); err != nil {
		t.Error(err)
	}
}

func TestMissingPasses(t *testing.T) {
	if err := File("rules database", filepath.Join(t.TempDir(), "none.db")); err != nil {
		t.Error(err)
	}
}

// A file owned by another user is refused even at mode 0644.
func TestForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	path := filepath.Join(t.TempDir(), "tcp.smtp.db")
	os.WriteFile(path, nil, 0o644)
	os.Chown(path, 65534, 65534)
	err := File("rules database", path)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("a database owned by nobody: %v", err)
	}
}

func mkfifo(path string, mode os.FileMode) error {
	if err := syscall.Mkfifo(path, uint32(mode)); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
