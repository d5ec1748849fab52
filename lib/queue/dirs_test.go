package queue

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWritableDirsAreRefused: the queue directory, a subdirectory or a
// directory above the queue that someone else may write makes the queue
// unusable, each with a reason naming it; a sticky directory above (as
// /tmp) passes.
func TestWritableDirsAreRefused(t *testing.T) {
	q := newQueue(t)
	parent := filepath.Dir(q.Dir)
	for _, c := range []struct {
		dir  string
		mode os.FileMode
		want string
	}{
		{q.Dir, 0o777, q.Dir + ": writable by group and others (mode 0777)"},
		{q.path(dirSeg), 0o770, "seg: writable by its group (mode 0770)"},
		{q.path(dirLock), 0o752, "lock: writable by others (mode 0752)"},
		{parent, 0o777, parent + ", a directory above it, is writable by group and others (mode 0777)"},
	} {
		fi, err := os.Stat(c.dir)
		must(t, err)
		must(t, os.Chmod(c.dir, c.mode))
		_, err = OpenReadOnly(q.Dir)
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s at %04o: %v, want %q", c.dir, c.mode, err, c.want)
		}
		must(t, os.Chmod(c.dir, fi.Mode().Perm()))
	}
	must(t, os.Chmod(parent, os.ModeSticky|0o777))
	defer os.Chmod(parent, 0o755)
	if _, err := OpenReadOnly(q.Dir); err != nil {
		t.Errorf("below a sticky directory: %v", err)
	}
}

// TestForeignDirAboveIsRefused: a directory above the queue that belongs
// to neither root nor the queue's owner could have the queue replaced.
func TestForeignDirAboveIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns a directory: run it as root")
	}
	q := newQueue(t)
	parent := filepath.Dir(q.Dir)
	must(t, os.Chown(parent, 65534, 65534))
	defer os.Chown(parent, 0, 0)
	_, err := OpenReadOnly(q.Dir)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), parent+", a directory above it, is owned by uid 65534") {
		t.Fatalf("OpenReadOnly below a directory of uid 65534: %v", err)
	}
}

// TestLinkedQueueDirAboveIsChecked: the queue directory may be a link (a
// sysadmin's), but the directories above its target are checked too.
func TestLinkedQueueDirAboveIsChecked(t *testing.T) {
	q := newQueue(t)
	link := filepath.Join(t.TempDir(), "queue")
	must(t, os.Symlink(q.Dir, link))
	if _, err := OpenReadOnly(link); err != nil {
		t.Fatalf("a linked queue: %v", err)
	}
	parent := filepath.Dir(q.Dir)
	must(t, os.Chmod(parent, 0o777))
	defer os.Chmod(parent, 0o755)
	if _, err := OpenReadOnly(link); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), parent+", a directory above it") {
		t.Fatalf("a linked queue whose target lies in a directory open to all: %v", err)
	}
}

// TestSideFiles: ctl/-like files are read only when they and their
// directory pass the queue's rules, written only as new files, and a
// linked directory is refused before anything is read or written there.
func TestSideFiles(t *testing.T) {
	q := newQueue(t)
	must(t, q.SideDir("ctl"))
	must(t, q.WriteSide("ctl/a", []byte("hello\n")))
	if b, err := q.ReadSide("ctl/a", 64); err != nil || string(b) != "hello\n" {
		t.Fatalf("ReadSide: %q, %v", b, err)
	}

	// A link in place of a file: not read; written over as a new file,
	// its target untouched.
	target := filepath.Join(t.TempDir(), "target")
	must(t, os.WriteFile(target, []byte("secret"), 0o600))
	must(t, os.Symlink(target, q.path("ctl", "b")))
	if _, err := q.ReadSide("ctl/b", 64); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "ctl/b: a symbolic link") {
		t.Errorf("ReadSide of a link: %v", err)
	}
	must(t, q.WriteSide("ctl/b", []byte("new")))
	if b, _ := os.ReadFile(target); string(b) != "secret" {
		t.Errorf("written through the link: target now %q", b)
	}

	// ctl/ itself a link to a directory elsewhere: refused, nothing there.
	elsewhere := t.TempDir()
	must(t, os.RemoveAll(q.path("ctl")))
	must(t, os.Symlink(elsewhere, q.path("ctl")))
	for what, err := range map[string]error{
		"SideDir":   q.SideDir("ctl"),
		"WriteSide": q.WriteSide("ctl/c", []byte("x")),
		"ReadSide":  func() error { _, err := q.ReadSide("ctl/c", 64); return err }(),
		"SideNames": func() error { _, err := q.SideNames("ctl"); return err }(),
	} {
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "ctl: not a directory but a symbolic link") {
			t.Errorf("%s with ctl/ a link: %v", what, err)
		}
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("files written through the linked ctl/: %v", ents)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "ctl/../../x", "a/b/c", "."} {
		if _, err := q.ReadSide(bad, 64); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadSide(%q): %v, want refused", bad, err)
		}
	}
}
