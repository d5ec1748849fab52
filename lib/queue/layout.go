package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The directories and files of a queue, relative to its root. gw-queue.5
// documents them; keep the two together.
const (
	dirSeg      = "seg"          // message segments, written only by injectors
	dirJournal  = "journal"      // delivery state, written only by the runner
	dirBad      = "bad"          // torn or foreign files the runner set aside
	dirTmp      = "tmp"          // injectors' spool files for large messages
	dirLock     = "lock"         // clock, trigger, runner lock
	fileFormat  = "format"       // "gw-queue 1": the layout version
	fileClock   = "lock/clock"   // the shared ID counter (see clock)
	fileTrig    = "lock/trigger" // FIFO: a byte written wakes the runner
	fileRunner  = "lock/runner"  // flock held by the one runner
	fileReserve = "lock/reserve" // space kept for the runner's journal
	formatLine  = "gw-queue 1\n"
)

// Queue is one queue directory. Its methods are safe for concurrent use.
type Queue struct {
	Dir   string
	clock *clock
	owner int      // uid owning Dir: every file below must be its (safe.go)
	aside asideLog // files set aside, not yet taken by the caller
}

// ErrNotQueue is returned by Open for a directory that is not a gw queue.
var ErrNotQueue = errors.New("not a gw queue (no format file; see gw-queue --init)")

// Init makes dir a queue: the directories, the trigger FIFO and the format
// file. It is idempotent; existing content is kept.
func Init(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	for _, d := range []string{dirSeg, dirJournal, dirBad, dirTmp, dirLock} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := unix.Mkfifo(filepath.Join(dir, fileTrig), 0o620); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkfifo %s: %w", fileTrig, err)
	}
	fp := filepath.Join(dir, fileFormat)
	owner, err := ownerOf(dir)
	if err != nil {
		return err
	}
	q := &Queue{Dir: dir, owner: owner}
	if b, err := q.readSafe(fileFormat, 64); err == nil {
		if string(b) != formatLine {
			return fmt.Errorf("%s: unknown queue format %q", fp, strings.TrimSpace(string(b)))
		}
		return nil
	} else if errors.Is(err, ErrUnsafe) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := writeFileSync(fp, []byte(formatLine), 0o640); err != nil {
		return err
	}
	return syncDir(dir)
}

// Open opens the queue at dir for injecting or reading. Readers that must
// not write anything (gw-qstat) use OpenReadOnly.
func Open(dir string) (*Queue, error) {
	q, err := OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	f, err := q.openOrReplace(fileClock, unix.O_RDWR|unix.O_CREAT, 0o640)
	if err != nil {
		return nil, fmt.Errorf("queue clock: %w", err)
	}
	c, err := openClock(f)
	if err != nil {
		return nil, fmt.Errorf("queue clock: %w", err)
	}
	q.clock = c
	return q, nil
}

// OpenReadOnly opens the queue at dir for reading only: it writes nothing,
// locks nothing and cannot hand out IDs. A queue whose directories are
// links or belong to another user than the queue directory's owner is
// refused (ErrUnsafe).
func OpenReadOnly(dir string) (*Queue, error) {
	owner, err := ownerOf(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotQueue)
	}
	if err != nil {
		return nil, err
	}
	q := &Queue{Dir: dir, owner: owner}
	if err := q.checkDirs(); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	b, err := q.readSafe(fileFormat, 64)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotQueue)
	}
	if err != nil {
		return nil, err
	}
	if string(b) != formatLine {
		return nil, fmt.Errorf("%s: unknown queue format %q", dir, strings.TrimSpace(string(b)))
	}
	return q, nil
}

// Owner returns the uid owning the queue directory, whose files must all
// be its.
func (q *Queue) Owner() int { return q.owner }

// Close releases the queue's clock mapping.
func (q *Queue) Close() error {
	if q.clock != nil {
		return q.clock.Close()
	}
	return nil
}

// NewID returns a fresh message ID from the queue's shared clock.
func (q *Queue) NewID() ID { return q.clock.Next() }

func (q *Queue) path(parts ...string) string {
	return filepath.Join(append([]string{q.Dir}, parts...)...)
}

// Pull wakes the runner: one byte into the trigger FIFO, without blocking.
// No runner (ENXIO) or a full FIFO (EAGAIN) is fine: in the first case the
// runner will scan at start, in the second it is already awake.
func (q *Queue) Pull() {
	f, err := q.openSafe(fileTrig, unix.O_WRONLY, 0, fifo)
	if err != nil {
		return
	}
	f.Write([]byte{'!'})
	f.Close()
}

// syncDir makes the directory entries of dir durable: the step after a
// create, rename or link that qmail left to the filesystem.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// writeFileSync creates path with data by temp file, fsync and rename. The
// temp file is made anew (O_EXCL): a link left in its place is removed,
// never written through.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
