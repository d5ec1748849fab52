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

// untrusted says why fi could have been changed by someone who is neither
// root nor this process's user, or "" when it could not.
func untrusted(fi os.FileInfo) string {
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		who := "group and others"
		switch m & 0o022 {
		case 0o020:
			who = "its group"
		case 0o002:
			who = "others"
		}
		return fmt.Sprintf("writable by %s (mode %04o)", who, m)
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
