// Package trustpath refuses configuration that someone else could have
// changed. A daemon reads its control files, its rules database and its
// queue as they are; if a local user could write them, that user decides
// who may relay, where mail goes, or what is delivered. So a daemon checks
// them before it serves, and will not start when one is writable by group
// or others, or owned by anyone but root or the daemon's own user (the
// owners INSTALL gives them).
package trustpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// Error is a path that fails the check, with the reason.
type Error struct {
	What   string // "control directory", "rules database", "queue"
	Path   string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("refusing %s %s: %s", e.What, e.Path, e.Reason)
}

// File checks path itself. A path that does not exist passes: the daemon
// then fails (or uses its defaults) as it would have, and nobody else's
// content is read.
func File(what, path string) error {
	return check(what, path, false)
}

// Dir checks the directory path and every entry directly in it (control
// files, a queue's subdirectories), followed through symbolic links: an
// entry is read as its target.
func Dir(what, path string) error {
	return check(what, path, true)
}

func check(what, path string, entries bool) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &Error{what, path, err.Error()}
	}
	if reason := untrusted(fi); reason != "" {
		return &Error{what, path, reason}
	}
	if !entries || !fi.IsDir() {
		return nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return &Error{what, path, err.Error()}
	}
	for _, e := range ents {
		p := filepath.Join(path, e.Name())
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a dangling link, or a file just removed: nothing to read
		}
		if err != nil {
			return &Error{what, p, err.Error()}
		}
		if fi.Mode()&(fs.ModeSocket|fs.ModeNamedPipe) != 0 {
			// Sockets and FIFOs carry no configuration; their group
			// is meant to write them (gw-queued's socket, the queue's
			// trigger).
			continue
		}
		if reason := untrusted(fi); reason != "" {
			return &Error{what, p, reason}
		}
	}
	return nil
}

// WritableBy says who besides the owner may write a file of mode m (its
// permission bits, as stat gives them), "" when no one may.
func WritableBy(m uint32) string {
	who := ""
	switch m & 0o022 {
	case 0:
		return ""
	case 0o020:
		who = "its group"
	case 0o002:
		who = "others"
	default:
		who = "group and others"
	}
	return fmt.Sprintf("writable by %s (mode %04o)", who, m&0o7777)
}

// untrusted says why fi could have been changed by someone who is neither
// root nor this process's user, or "" when it could not.
func untrusted(fi os.FileInfo) string {
	if w := WritableBy(uint32(fi.Mode().Perm())); w != "" {
		return w
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "no owner known"
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Sprintf("owned by uid %d, not root or the daemon's user (uid %d)", uid, os.Geteuid())
	}
	return ""
}

// Own checks a directory a daemon keeps its own state in (gw-send's
// MTA-STS policies, say) and every directory above it. Mode and owner of
// the directory alone prove little: whoever may write a directory above
// it can rename it away and put one of their own, with their own
// content, in its place. So the directory must be a directory (not a
// link) of root or this process's user that no one else may write, and
// each directory above it, as named and as links resolve, root's or this
// user's and writable by no one else unless sticky (/tmp: there no one
// renames what is not theirs). A directory that does not exist yet
// passes when the directories above it do: the daemon makes it.
func Own(what, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return &Error{what, path, err.Error()}
	}
	parents := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil && real != parents[0] {
		parents = append(parents, real)
	}
	for _, p := range parents {
		for d := p; ; d = filepath.Dir(d) {
			if reason := above(d); reason != "" {
				return &Error{what, path, d + ", a directory above it, is " + reason}
			}
			if d == "/" || d == "." {
				break
			}
		}
	}
	// The directory itself last: a swapped one is named by the directory
	// above that let it be swapped.
	fi, err := os.Lstat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &Error{what, path, err.Error()}
	case !fi.IsDir():
		return &Error{what, path, "not a directory but " + fi.Mode().Type().String()}
	default:
		if reason := untrusted(fi); reason != "" {
			return &Error{what, path, reason}
		}
	}
	return nil
}

// above says why the directory d, above a daemon's own, lets someone
// else replace what is below it, or "" when it does not.
func above(d string) string {
	fi, err := os.Stat(d)
	if errors.Is(err, fs.ErrNotExist) {
		return "" // made with the directory below, by the daemon
	}
	if err != nil {
		return err.Error()
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			return "" // /tmp and its kind
		}
	}
	return untrusted(fi)
}

// OpenOwned opens name as os.OpenFile does, for a database in a directory
// a daemon's user owns (state/smtpd/greylist.db): that user may have put
// a link there, or a second name of another file, for a process of more
// privilege (root's gw-dmarc or session test, say) to open and write. So
// it never follows a link, and takes only a regular file of one name
// owned by root, this process's user or the directory's owner. It has
// the signature of bbolt's Options.OpenFile.
func OpenOwned(name string, flag int, perm os.FileMode) (*os.File, error) {
	return OpenFile(name, flag, perm, "neither root, this process's user nor its directory's owner",
		0, os.Geteuid(), dirOwner(filepath.Dir(name)))
}

// OpenFile opens name as os.OpenFile does, never through a link, and
// keeps it only when it is a regular file of one name owned by one of
// owners: the rule for every file gw reads or writes in a directory
// another user may write (a database, a cache, a held message, a pid
// file). whose words the owners for the error: "owned by uid N, whose".
// The error is an *os.PathError whose Err says which rule failed.
func OpenFile(name string, flag int, perm os.FileMode, whose string, owners ...int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	reason := ""
	switch {
	case !fi.Mode().IsRegular():
		reason = "not a regular file"
	case st.Nlink != 1:
		reason = fmt.Sprintf("a hard link (%d names for one file)", st.Nlink)
	case !slices.Contains(owners, int(st.Uid)):
		reason = fmt.Sprintf("owned by uid %d, %s", st.Uid, whose)
	}
	if reason != "" {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: errors.New(reason)}
	}
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func dirOwner(dir string) int {
	fi, err := os.Stat(dir)
	if err != nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}
