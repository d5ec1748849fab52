package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"gw/lib/trustpath"
)

// O_NOFOLLOW and the owner check of openSafe guard the last part of a
// path only. A directory on the way is as good as the file: whoever may
// write the queue directory, one of its subdirectories or a directory
// above them can put a link or a file of their own where gw expects its
// own, between any check and the open. So the queue is used only when
//
//   - the queue directory and its subdirectories are directories of the
//     queue's owner that no one else may write (group or others);
//   - the subdirectories are no symbolic links (the queue directory itself
//     may be one: a sysadmin's, in a directory checked as the others);
//   - every directory above it, as named and as the links resolve, is
//     root's or the owner's, and writable by no one else unless it is
//     sticky (/tmp): there others cannot rename or remove what is not
//     theirs.

// queueDirs are the subdirectories checked at every open. ctl/ is
// checked by the one that uses it (CheckDir): an unsafe ctl/ stops queue
// control, not delivery.
var queueDirs = []string{dirSeg, dirJournal, dirBad, dirTmp, dirLock}

// checkDirs refuses a queue whose directories could be changed by anyone
// but its owner (and root).
func (q *Queue) checkDirs() error {
	if err := q.checkTop(); err != nil {
		return err
	}
	for _, d := range queueDirs {
		if err := q.CheckDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err // an older queue without bad/ passes: made when needed
		}
	}
	return nil
}

// CheckDir applies the rules above to the subdirectory rel of the queue:
// an *UnsafeError when it breaks one, an error that is os.ErrNotExist
// when it does not exist.
func (q *Queue) CheckDir(rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(q.path(rel), &st); err != nil {
		return &os.PathError{Op: "lstat", Path: q.path(rel), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &UnsafeError{rel, "not a directory but a " + kindName(st.Mode&unix.S_IFMT)}
	}
	if int(st.Uid) != q.owner {
		return &UnsafeError{rel, fmt.Sprintf("owned by uid %d, not by the queue's owner (uid %d)", st.Uid, q.owner)}
	}
	if w := trustpath.WritableBy(st.Mode); w != "" {
		return &UnsafeError{rel, w}
	}
	return nil
}

// checkTop checks the queue directory (followed, as ownerOf did) and the
// directories above it.
func (q *Queue) checkTop() error {
	var st unix.Stat_t
	if err := unix.Stat(q.Dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: q.Dir, Err: err}
	}
	if w := trustpath.WritableBy(st.Mode); w != "" {
		return &UnsafeError{"", w}
	}
	abs, err := filepath.Abs(q.Dir)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if err := q.checkAbove(d); err != nil {
			return err
		}
		if d == "/" || d == "." {
			break
		}
	}
	return q.checkAboveResolved()
}

// checkAboveResolved checks the directories above the queue as the
// kernel resolves them: from the queue directory up by "..", each one
// held open, until the root. Reading the links' targets instead would
// name paths of another mount namespace where a link such as
// /proc/PID/root leads (the disk-full test's tmpfs), or race a rename.
func (q *Queue) checkAboveResolved() error {
	fd, err := unix.Open(q.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: q.Dir, Err: err}
	}
	var here unix.Stat_t
	if err := unix.Fstat(fd, &here); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "fstat", Path: q.Dir, Err: err}
	}
	for depth := 0; depth < 4096; depth++ {
		up, err := unix.Openat(fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return &os.PathError{Op: "open", Path: q.Dir + "/..", Err: err}
		}
		fd = up
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return &os.PathError{Op: "fstat", Path: q.Dir + "/..", Err: err}
		}
		if st.Dev == here.Dev && st.Ino == here.Ino {
			break // the root: its ".." is itself
		}
		here = st
		if err := q.checkAboveStat(fdName(fd), &st); err != nil {
			unix.Close(fd)
			return err
		}
	}
	unix.Close(fd)
	return nil
}

// fdName is the path the kernel gives the directory open as fd, for
// messages only.
func fdName(fd int) string {
	name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "a directory"
	}
	return name
}

// checkAbove checks one directory above the queue.
func (q *Queue) checkAbove(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return q.checkAboveStat(dir, &st)
}

// checkAboveStat checks one directory above the queue, st its status.
func (q *Queue) checkAboveStat(dir string, st *unix.Stat_t) error {
	if st.Uid != 0 && int(st.Uid) != q.owner {
		return &UnsafeError{"", fmt.Sprintf("%s, a directory above it, is owned by uid %d, neither root nor the queue's owner (uid %d)", dir, st.Uid, q.owner)}
	}
	if w := trustpath.WritableBy(st.Mode); w != "" && st.Mode&unix.S_ISVTX == 0 {
		return &UnsafeError{"", dir + ", a directory above it, is " + w}
	}
	return nil
}
