package queue

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Side files are the queue's files that are not messages or journal:
// gw-qctl's requests and gw-send's answers in ctl/. Other programs write
// them into a directory of the queue, so they are used by the queue's
// rules (safe.go, dirs.go): each call checks the directory first, and a
// file is read only as a regular file of one link owned by the queue's
// owner, and written only as a new file, never through what stood there.

// SideDir checks the subdirectory rel of the queue (CheckDir), making it
// first when it does not exist.
func (q *Queue) SideDir(rel string) error {
	if err := checkSideName(rel); err != nil {
		return err
	}
	err := q.CheckDir(rel)
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Mkdir(q.path(rel), 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return q.CheckDir(rel)
}

// SideNames returns the names of the entries of the subdirectory rel,
// once it passed CheckDir; none when it does not exist.
func (q *Queue) SideNames(rel string) ([]string, error) {
	if err := checkSideName(rel); err != nil {
		return nil, err
	}
	if err := q.CheckDir(rel); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	ents, err := os.ReadDir(q.path(rel))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// ReadSide returns the content of the file rel (at most limit bytes) when
// its directory and the file pass the queue's rules; a refusal is an
// *UnsafeError.
func (q *Queue) ReadSide(rel string, limit int64) ([]byte, error) {
	if err := q.checkSideParent(rel); err != nil {
		return nil, err
	}
	// The name first: a file of another owner may not even open (EACCES),
	// and is to be refused as foreign, not skipped as unreadable.
	if ue := q.lstatSafe(rel); ue != nil {
		return nil, ue
	}
	return q.readSafe(rel, limit)
}

// ExistsSide reports whether the name rel exists, without following it.
func (q *Queue) ExistsSide(rel string) bool {
	var st unix.Stat_t
	return q.checkSideParent(rel) == nil && unix.Lstat(q.path(rel), &st) == nil
}

// WriteSide writes data into rel as a new file of mode 0640: a file or
// link that stood there is removed first, never written through.
func (q *Queue) WriteSide(rel string, data []byte) error {
	if err := q.checkSideParent(rel); err != nil {
		return err
	}
	path := q.path(rel)
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RenameSide renames the name from to to within the queue's checked
// directories; the rename moves a link itself, never what it points to.
func (q *Queue) RenameSide(from, to string) error {
	if err := q.checkSideParent(from); err != nil {
		return err
	}
	if err := q.checkSideParent(to); err != nil {
		return err
	}
	return os.Rename(q.path(from), q.path(to))
}

// RemoveSide removes the name rel (a link itself, not its target).
func (q *Queue) RemoveSide(rel string) error {
	if err := q.checkSideParent(rel); err != nil {
		return err
	}
	return os.Remove(q.path(rel))
}

// SetAside moves the file (or directory) rel into bad/, as the runner
// does with what it refuses, and records the move for TakeSetAside. Only
// the queue's runner (gw-send) calls it: readers and tools report.
func (q *Queue) SetAside(rel, reason string) (SetAside, error) {
	if err := checkSideName(rel); err != nil {
		return SetAside{}, err
	}
	return q.setAside(rel, reason)
}

// checkSideParent checks the directory of the file rel.
func (q *Queue) checkSideParent(rel string) error {
	if err := checkSideName(rel); err != nil {
		return err
	}
	dir := filepath.Dir(rel)
	if dir == "." {
		return nil // the queue directory, checked at Open
	}
	return q.CheckDir(dir)
}

// checkSideName refuses a name that leaves the queue or reaches through
// more than one directory: the side directories lie directly below it.
func checkSideName(rel string) error {
	clean := filepath.Clean(rel)
	if clean != rel || filepath.IsAbs(rel) || rel == "." || strings.HasPrefix(rel, "..") || strings.Count(rel, "/") > 1 {
		return errors.New("bad name for a file of the queue: " + rel)
	}
	return nil
}
