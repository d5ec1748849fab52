package qctl

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The files of ctl/ are in a directory the queue user writes: they are
// read without following a link, and written only as new files, so that
// neither the runner nor a tool writes through a link planted there.

// maxFile bounds a request or an answer: MaxIDs lines of 14 bytes and
// an action, or as many answer lines.
const maxFile = MaxIDs * 128

// readFile reads the regular file path, refusing a link or anything else.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("not a regular file")}
	}
	return io.ReadAll(io.LimitReader(f, maxFile))
}

// writeNew writes data into path as a new file: what stood there before
// (a stale temp file, or a link) is removed first, never written through.
func writeNew(path string, data []byte) error {
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
