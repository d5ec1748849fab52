package instance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// state/ holds what the daemons remember between runs, one directory a
// user, so that no daemon's user can change what another reads:
//
//	state/         root, mode 0755: no daemon's user may rename or plant
//	               anything here (run.pid is gw-instance run's, root's);
//	state/send/    the queue user, 0750: gw-send's MTA-STS policies and
//	               TLS-RPT results, which decide how mail leaves;
//	state/smtpd/   the smtpd user, 0750: gw-smtpd's databases (greylist,
//	               callout answers, rates, DMARC results) by convention;
//	state/qmtpd/   the qmtpd user, 0750: gw-qmtpd's (rates).
//
// Older layouts gave the whole of state/ to the smtpd user, who could then
// swap state/send for a directory of their own making.

// stateDir is one daemon's directory below state/ and the user it is for.
type stateDir struct{ name, user string }

func stateDirs(u Users) []stateDir {
	return []stateDir{{"send", u.Queue}, {"smtpd", u.SMTPD}, {"qmtpd", u.QMTPD}}
}

// setState makes state/ and each daemon's directory in it and, as root,
// gives them the owners above. A daemon's directory owned by someone else
// than root or its user was made by another party, who may have filled
// it: it is refused, not taken over.
func (in *Instance) setState(s *Settings) error {
	if err := os.MkdirAll(in.Path("state"), 0o755); err != nil {
		return err
	}
	root := os.Geteuid() == 0 && s.Users != (Users{})
	if root {
		if err := giveDir(in.Path("state"), 0, 0, 0o755); err != nil {
			return err
		}
	}
	for _, d := range stateDirs(s.Users) {
		p := in.Path("state", d.name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			err = os.Mkdir(p, 0o750)
			if err == nil {
				fi, err = os.Lstat(p)
			}
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("state/%s is a %s, not a directory: remove it and run gw-instance services %s again", d.name, kind(fi), in.Name)
		}
		if !root {
			continue
		}
		uid, gid := 0, 0
		if d.user != "" {
			if uid, gid, err = lookupIDs(d.user); err != nil {
				return fmt.Errorf("user %s: %w", d.user, err)
			}
		}
		if owner := fileUID(fi); owner != 0 && owner != uid {
			return fmt.Errorf("state/%s is owned by uid %d, neither root nor its user %s: whoever made it may have filled it; remove it (rm -r %s) and run gw-instance services %s again",
				d.name, owner, userName(d.user), p, in.Name)
		}
		if err := giveTree(p, uid, gid, 0o750); err != nil {
			return err
		}
	}
	return nil
}

func userName(u string) string {
	if u == "" {
		return "root"
	}
	return u
}

func kind(fi fs.FileInfo) string {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "symbolic link"
	}
	return "file of type " + fi.Mode().Type().String()
}

func fileUID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkState names what in state/ lets one daemon's user change what
// another reads: a state/ that is not root's (the older layout), a
// daemon's directory of the wrong owner or open to others, and listener
// databases still directly in state/, where their user may no longer
// create them.
func (in *Instance) checkState(s *Settings) []string {
	var p []string
	st, err := os.Lstat(in.Path("state"))
	if err != nil {
		return []string{fmt.Sprintf("state/: %v (gw-instance services %s)", err, in.Name)}
	}
	if os.Geteuid() != 0 || s.Users == (Users{}) {
		return nil // one user runs everything: no one to keep apart
	}
	if o := fileUID(st); o != 0 || st.Mode().Perm()&0o022 != 0 {
		p = append(p, fmt.Sprintf("state/ is owned by uid %d (mode %04o), an older layout: that user can swap gw-send's state/send and plant an MTA-STS policy; gw-instance services %s gives state/ to root and each daemon its own directory in it",
			o, st.Mode().Perm(), in.Name))
	}
	for _, d := range stateDirs(s.Users) {
		fi, err := os.Lstat(in.Path("state", d.name))
		if err != nil || !fi.IsDir() {
			p = append(p, fmt.Sprintf("state/%s is missing or not a directory (gw-instance services %s)", d.name, in.Name))
			continue
		}
		want := 0
		if d.user != "" {
			if want, _, err = lookupIDs(d.user); err != nil {
				continue // checkPermissions names unknown users
			}
		}
		if o := fileUID(fi); o != want || fi.Mode().Perm()&0o022 != 0 {
			p = append(p, fmt.Sprintf("state/%s is uid %d's (mode %04o), not %s's alone (gw-instance services %s)",
				d.name, o, fi.Mode().Perm(), userName(d.user), in.Name))
		}
	}
	ents, _ := os.ReadDir(in.Path("state"))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".db") {
			p = append(p, fmt.Sprintf("state/%s: a database in the older layout's place, where its user may create no file now; gw-instance services %s moves those control/listeners names into state/smtpd/ or state/qmtpd/",
				e.Name(), in.Name))
		}
	}
	return p
}

// giveDir gives the directory path (not a link) to uid:gid with mode,
// by its descriptor.
func giveDir(path string, uid, gid int, mode uint32) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: path, Err: err}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	return nil
}

// giveTree gives the directory path and everything below it to uid:gid,
// and the directory mode. It walks by descriptors, never by names: the
// tree's user (a daemon's) can rename and link below it while root walks,
// and a name walked by could then lead anywhere (a link to /etc, a
// directory swapped for one).
func giveTree(path string, uid, gid int, mode uint32) error {
	if err := giveDir(path, uid, gid, mode); err != nil {
		return err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	return chownBelow(fd, path, uid, gid)
}

// chownBelow gives every entry below the directory fd (which it closes)
// to uid:gid; links themselves, never their targets.
func chownBelow(fd int, path string, uid, gid int) error {
	dir := os.NewFile(uintptr(fd), path)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(path, n)
		if err := unix.Fchownat(fd, n, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile
			}
			return &os.PathError{Op: "chown", Path: p, Err: err}
		}
		sub, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not a directory (or a link to one): nothing below
		}
		if err := chownBelow(sub, p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// migrateState moves the listeners' databases of the older layout
// (state/greylist.db, named in control/listeners) into their user's
// directory, state/smtpd/ or state/qmtpd/, and names them there, so that
// an instance keeps its greylist and its callout answers when state/
// becomes root's. A database already in the new place is kept, the old
// one then left for check to name; a link in the old place is never
// moved.
func (in *Instance) migrateState(s *Settings) error {
	changed := false
	for li := range s.Listeners {
		l := &s.Listeners[li]
		role := stateRole(*l)
		if !hasFlag(l.Args, "rates") {
			// The rates file an earlier gw made for the listener.
			if err := moveDB(in.Path("state", "rates-"+l.Face+".db"), in.RatesFile(*l), s.listenerUser(*l)); err != nil {
				return err
			}
		}
		for i, a := range l.Args {
			prefix, val := "", a
			if strings.HasPrefix(a, "-") {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					continue
				}
				prefix, val = k+"=", v
			}
			abs := val
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(in.Dir(), abs) // the run scripts start in the instance's directory
			}
			if filepath.Dir(abs) != in.Path("state") || !strings.HasSuffix(abs, ".db") {
				continue
			}
			to := in.Path("state", role, filepath.Base(abs))
			if err := moveDB(abs, to, s.listenerUser(*l)); err != nil {
				return err
			}
			if filepath.IsAbs(val) {
				l.Args[i] = prefix + to
			} else {
				l.Args[i] = prefix + filepath.Join("state", role, filepath.Base(abs))
			}
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return in.SetListeners(s.Listeners)
}

// moveDB moves the database from into the daemon's directory as to and
// gives it to user, when from is a regular file and to does not exist.
func moveDB(from, to, user string) error {
	fi, err := os.Lstat(from)
	if err != nil || !fi.Mode().IsRegular() {
		return nil // nothing to move, or a link: never moved, check names it
	}
	if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return giveMoved(to, user)
}

// giveMoved gives a database just moved into a daemon's directory to
// that daemon's user (the older layout may have had another write it).
func giveMoved(path, user string) error {
	uid, gid := 0, 0
	if user != "" {
		var err error
		if uid, gid, err = lookupIDs(user); err != nil {
			return err
		}
	}
	return os.Lchown(path, uid, gid)
}
