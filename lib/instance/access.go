package instance

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The instance's directories keep three parties apart (INSTALL, step 3):
//
//	queue/   the queue user and its own group, mode 0700: only gw-queued
//	         and gw-send (and root) read messages;
//	inject/  the queue user, group of the listeners, mode 2750: the
//	         listeners reach gw-queued's socket, which takes the
//	         directory's group (set-group-ID) and mode 0660;
//	acl/     root, group of the listeners, mode 2750: the rules
//	         databases (0640) take the listeners' group, so the listeners
//	         read them and no other local user can read or lock them.
//
// A listener never needs the queue, only the socket: a listener broken
// into must not read every message that passed through the gateway.

// InjectSocket is gw-queued's socket, where the listeners hand over their
// messages.
func (in *Instance) InjectSocket() string { return in.Path("inject", "inject.sock") }

// listenerGID is the group of the listeners' users: the smtpd user's
// primary group, or the qmtpd user's when there is no smtpd user. ok is
// false when no listener user is set (no privilege drop).
func (u Users) listenerGID() (gid int, ok bool, err error) {
	for _, name := range []string{u.SMTPD, u.QMTPD} {
		if name == "" {
			continue
		}
		_, gid, err := lookupIDs(name)
		if err != nil {
			return 0, false, fmt.Errorf("user %s: %w", name, err)
		}
		return gid, true, nil
	}
	return 0, false, nil
}

// setAccess gives queue/, inject/ and acl/ (and the rules databases in it)
// the owners and modes above. Without root or without users it only makes
// the directories and closes queue/ to everyone but its owner.
func (in *Instance) setAccess(s *Settings) error {
	if err := os.MkdirAll(in.Path("inject"), 0o750); err != nil {
		return err
	}
	if err := os.Chmod(in.Queue(), 0o700); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	gid, ok, err := s.Users.listenerGID()
	if err != nil || !ok {
		return err
	}
	quid := 0
	if s.Users.Queue != "" {
		if quid, _, err = lookupIDs(s.Users.Queue); err != nil {
			return fmt.Errorf("user %s: %w", s.Users.Queue, err)
		}
	}
	for _, d := range []struct {
		path string
		uid  int
	}{{in.Path("inject"), quid}, {in.Path("acl"), 0}} {
		if err := os.Chown(d.path, d.uid, gid); err != nil {
			return err
		}
		if err := os.Chmod(d.path, 0o750|os.ModeSetgid); err != nil {
			return err
		}
	}
	// Databases compiled before acl/ passed on its group.
	dbs, err := filepath.Glob(in.Path("acl", "*.db"))
	if err != nil {
		return err
	}
	for _, db := range dbs {
		if err := os.Chown(db, 0, gid); err != nil {
			return err
		}
		if err := os.Chmod(db, 0o640); err != nil {
			return err
		}
	}
	return nil
}

// checkAccess names what lets a listener's user read the queue.
func (in *Instance) checkAccess(s *Settings) []string {
	var p []string
	gid, ok, err := s.Users.listenerGID()
	if err != nil || !ok {
		return nil // checkPermissions names unknown users
	}
	st, err := os.Stat(in.Queue())
	if err != nil {
		return nil
	}
	if sameGroup(st, gid) && st.Mode().Perm()&0o050 == 0o050 {
		p = append(p, fmt.Sprintf("queue/ is open to the listeners' group (gid %d, mode %04o): their users can read every queued message (gw-instance services %s)",
			gid, st.Mode().Perm(), in.Name))
	}
	if s.Users.Queue != "" {
		if _, qgid, err := lookupIDs(s.Users.Queue); err == nil && qgid == gid {
			p = append(p, fmt.Sprintf("queue user %s has the listeners' group (gid %d) as its own: give it a group of its own (INSTALL, step 3)",
				s.Users.Queue, gid))
		}
	}
	if st, err := os.Stat(in.Path("inject")); err != nil {
		p = append(p, fmt.Sprintf("inject/: %v (gw-instance services %s)", err, in.Name))
	} else if !sameGroup(st, gid) || st.Mode()&os.ModeSetgid == 0 {
		p = append(p, fmt.Sprintf("inject/ does not pass the listeners' group (gid %d) on to gw-queued's socket (gw-instance services %s)", gid, in.Name))
	}
	return p
}

// sameGroup says whether fi belongs to group gid.
func sameGroup(fi os.FileInfo, gid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Gid) == gid
}
