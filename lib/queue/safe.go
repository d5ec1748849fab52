package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Every file below a queue is opened without following a symbolic link
// and accepted only as what gw itself makes there: a regular file (the
// trigger: a FIFO) with one link, owned by the queue's owner (the owner of
// the queue directory). The queue user can put anything into the queue,
// so a file it could have planted is treated as input from outside: a
// link to a segment of another queue is not delivered, and a tool run as
// root never writes through a link into a file of root's.
//
// What the runner refuses it sets aside into bad/, under its own name,
// and never removes: the sysadmin decides. Readers report it and move
// nothing.

// ErrUnsafe is what every UnsafeError is.
var ErrUnsafe = errors.New("unsafe queue file")

// UnsafeError names a file below the queue that was refused, and why.
type UnsafeError struct {
	File   string // relative to the queue directory; "" for the directory itself
	Reason string
}

func (e *UnsafeError) Error() string {
	if e.File == "" { // the queue directory itself
		return e.Reason
	}
	return e.File + ": " + e.Reason
}

// Is makes errors.Is(err, ErrUnsafe) hold.
func (e *UnsafeError) Is(target error) bool { return target == ErrUnsafe }

// SetAside is a file the queue moved into bad/.
type SetAside struct {
	File   string // where it was, relative to the queue directory
	To     string // where it is now, relative to the queue directory
	Reason string
}

// kinds of file openSafe accepts.
const (
	regular = unix.S_IFREG
	fifo    = unix.S_IFIFO
)

// openSafe opens the file rel of the queue with flag (O_NOFOLLOW,
// O_CLOEXEC and, while it is checked, O_NONBLOCK added) and checks that
// it is of kind, has one link (a FIFO: any) and belongs to the queue's
// owner. A refused file is an *UnsafeError; nothing is read or written
// through it.
func (q *Queue) openSafe(rel string, flag int, perm uint32, kind uint32) (*os.File, error) {
	path := q.path(rel)
	// O_NONBLOCK keeps a FIFO planted where a regular file belongs from
	// blocking the open; it is taken off again once the kind is known.
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, perm)
	if err == unix.ELOOP {
		return nil, &UnsafeError{rel, "a symbolic link"}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := q.checkFd(rel, fd, kind); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if kind == regular {
		unix.SetNonblock(fd, false)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkFd applies openSafe's rules to an open file.
func (q *Queue) checkFd(rel string, fd int, kind uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: q.path(rel), Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != kind:
		return &UnsafeError{rel, "not a " + kindName(kind) + " but a " + kindName(st.Mode&unix.S_IFMT)}
	case kind == regular && st.Nlink == 0:
		// Removed between its open and this check (the runner finished
		// it while a reader such as gw-qstat opened it): gone, not a link.
		return &os.PathError{Op: "open", Path: q.path(rel), Err: unix.ENOENT}
	case kind == regular && st.Nlink != 1:
		return &UnsafeError{rel, fmt.Sprintf("a hard link (%d names for one file)", st.Nlink)}
	case int(st.Uid) != q.owner:
		return &UnsafeError{rel, fmt.Sprintf("owned by uid %d, not by the queue's owner (uid %d)", st.Uid, q.owner)}
	}
	return nil
}

func kindName(k uint32) string {
	switch k {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symbolic link"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "device"
}

// readSafe returns the content of the small file rel, opened by openSafe.
func (q *Queue) readSafe(rel string, limit int64) ([]byte, error) {
	f, err := q.openSafe(rel, unix.O_RDONLY, 0, regular)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &UnsafeError{rel, fmt.Sprintf("longer than %d bytes", limit)}
	}
	return b, nil
}

// lstatSafe applies openSafe's rules for a regular file to the name rel
// without opening it: nil if it passes or is gone.
func (q *Queue) lstatSafe(rel string) *UnsafeError {
	var st unix.Stat_t
	if unix.Lstat(q.path(rel), &st) != nil {
		return nil
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &UnsafeError{rel, "a symbolic link"} // as openSafe says it
	case st.Mode&unix.S_IFMT != regular:
		return &UnsafeError{rel, "not a regular file but a " + kindName(st.Mode&unix.S_IFMT)}
	case st.Nlink != 1:
		return &UnsafeError{rel, fmt.Sprintf("a hard link (%d names for one file)", st.Nlink)}
	case int(st.Uid) != q.owner:
		return &UnsafeError{rel, fmt.Sprintf("owned by uid %d, not by the queue's owner (uid %d)", st.Uid, q.owner)}
	}
	return nil
}

// asideLog holds what a Queue set aside until its user logs it.
type asideLog struct {
	mu   sync.Mutex
	list []SetAside
}

// TakeSetAside returns the files this Queue moved into bad/ since the last
// call, for the caller to log by name.
func (q *Queue) TakeSetAside() []SetAside {
	q.aside.mu.Lock()
	defer q.aside.mu.Unlock()
	l := q.aside.list
	q.aside.list = nil
	return l
}

// setAside moves the file rel into bad/ without replacing anything there
// (a second file of the same name gets a suffix), flushes both
// directories and records the move. The rename moves the link itself,
// never what it points to.
func (q *Queue) setAside(rel, reason string) (SetAside, error) {
	if err := os.Mkdir(q.path(dirBad), 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return SetAside{}, err
	}
	base := filepath.Base(rel)
	to := dirBad + "/" + base
	var err error
	for i := 1; ; i++ {
		err = renameNoReplace(q.path(rel), q.path(to))
		if !errors.Is(err, os.ErrExist) || i > 1000 {
			break
		}
		to = fmt.Sprintf("%s/%s.%d", dirBad, base, i)
	}
	if err != nil {
		return SetAside{}, fmt.Errorf("setting %s aside: %w", rel, err)
	}
	syncDir(q.path(filepath.Dir(rel)))
	syncDir(q.path(dirBad))
	a := SetAside{File: rel, To: to, Reason: reason}
	q.aside.mu.Lock()
	q.aside.list = append(q.aside.list, a)
	q.aside.mu.Unlock()
	return a, nil
}

// openOrReplace opens the lock-directory file rel with openSafe; one that
// is refused is set aside and made anew once. Lock files hold nothing a
// message needs (the clock is seeded again by the runner), so replacing
// them loses nothing.
func (q *Queue) openOrReplace(rel string, flag int, perm uint32) (*os.File, error) {
	f, err := q.openSafe(rel, flag, perm, regular)
	var ue *UnsafeError
	if !errors.As(err, &ue) {
		return f, err
	}
	if _, err := q.setAside(rel, ue.Reason); err != nil {
		return nil, err
	}
	return q.openSafe(rel, flag|unix.O_CREAT|unix.O_EXCL, perm, regular)
}

// inTmp reports whether the file rel of seg/ is the same file as its
// namesake in tmp/: a rename into seg/ done by link and unlink (where the
// filesystem lacks RENAME_NOREPLACE) has two names for a moment.
func (q *Queue) inTmp(name string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(q.path(dirSeg, name), &a) != nil || unix.Lstat(q.path(dirTmp, name), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// ownerOf returns the uid owning dir, following a link there: the queue
// directory itself may be a link the sysadmin made.
func ownerOf(dir string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("%s: not a directory", dir)
	}
	return int(st.Uid), nil
}

// checkInjector refuses to write a segment the runner would refuse: one
// made by another user than the queue's owner (say, a gw-send delivering
// bounces into a bounce queue of another owner). Better a temporary
// failure now than an acknowledged message set aside later.
func (q *Queue) checkInjector() error {
	if euid := os.Geteuid(); euid != q.owner {
		return fmt.Errorf("queue %s belongs to uid %d, not to this process's uid %d: its runner would refuse the file", q.Dir, q.owner, euid)
	}
	return nil
}
