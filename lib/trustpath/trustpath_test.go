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

// A daemon's own directory is refused when someone else could swap it: a
// directory above it of another user, or one they may write, or a link.
func TestOwnWithTheDirectoriesAbove(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	send := filepath.Join(state, "send")
	os.MkdirAll(send, 0o750)
	os.Chmod(state, 0o755)
	if err := Own("state directory", send); err != nil {
		t.Fatalf("state/send below 0755 directories of this user: %v", err)
	}
	if err := Own("state directory", filepath.Join(state, "none")); err != nil {
		t.Errorf("a directory still to make: %v", err)
	}
	os.Chmod(state, 0o775)
	if err := Own("state directory", send); err == nil || !strings.Contains(err.Error(), state+", a directory above it, is writable by its group") {
		t.Errorf("state/ writable by its group: %v", err)
	}
	os.Chmod(state, 0o755)
	os.Chmod(send, 0o770)
	if err := Own("state directory", send); err == nil || !strings.Contains(err.Error(), "writable by its group (mode 0770)") {
		t.Errorf("state/send writable by its group: %v", err)
	}
	os.Chmod(send, 0o750)
	link := filepath.Join(state, "link")
	os.Symlink(send, link)
	if err := Own("state directory", link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a link in place of the directory: %v", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	os.Chown(state, 65534, 65534)
	if err := Own("state directory", send); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("state/ owned by nobody: %v", err)
	}
}

// A database in a daemon's directory opens only as a regular file of one
// name of the right owner: never through a link or a second name.
func TestOpenOwned(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "greylist.db")
	f, err := OpenOwned(db, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("a new database: %v", err)
	}
	f.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("x"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "link.db"))
	os.Link(secret, filepath.Join(dir, "hard.db"))
	for name, want := range map[string]string{"link.db": "too many levels of symbolic links", "hard.db": "a hard link (2 names for one file)"} {
		if f, err := OpenOwned(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
			if f != nil {
				f.Close()
			}
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	// root (gw-dmarc, say) opens a file of the directory's owner, not
	// one of a third user's.
	os.Chown(dir, 65534, 65534)
	os.Chown(db, 65534, 65534)
	if f, err := OpenOwned(db, os.O_RDONLY, 0); err != nil {
		t.Errorf("a database of the directory's owner: %v", err)
	} else {
		f.Close()
	}
	os.Chown(db, 1, 1)
	if _, err := OpenOwned(db, os.O_RDONLY, 0); err == nil || !strings.Contains(err.Error(), "owned by uid 1") {
		t.Errorf("a database of a third user's: %v", err)
	}
}
