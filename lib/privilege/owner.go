package privilege

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// BecomeOwnerOf makes a process started as root run as the owner of dir
// (its uid and group), with no supplementary groups, before it touches
// anything in dir: qmail's queue tools run as the queue's user, so that
// what they create the queue's daemons can read and write, and a link the
// queue user planted never leads a root process into root's files.
//
// It does nothing when the process is not root, dir is root's or dir does
// not exist. It returns the uid and gid the process runs as afterwards.
//
// The syscall package's Setgroups, Setresgid and Setresuid act on every
// thread of the process (the Go runtime's all-threads call), unlike the
// raw system calls, which change only the calling thread.
func BecomeOwnerOf(dir string) (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == unix.ENOENT {
		// Nothing there to touch: the caller's open says what is missing.
		return 0, os.Getegid(), nil
	} else if err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, fmt.Errorf("%s is not a directory", dir)
	}
	uid, gid = int(st.Uid), int(st.Gid)
	if uid == 0 {
		return 0, os.Getegid(), nil
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return 0, 0, fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return 0, 0, fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return 0, 0, fmt.Errorf("setresuid %d: %w", uid, err)
	}
	r, e, s := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid {
		return 0, 0, fmt.Errorf("ids not switched: uid %d/%d/%d gid %d/%d/%d", r, e, s, rg, eg, sg)
	}
	return uid, gid, nil
}

// atSecure is AT_SECURE's key in the auxiliary vector.
const atSecure = 23

// Secure reports whether the process runs with more privilege than its
// caller (setuid or setgid, or raised capabilities): the kernel's
// AT_SECURE, which the C library uses to ignore the environment, or real
// and effective ids that differ (all the check there is, should the
// auxiliary vector be unreadable). A secure process takes no file location
// from its environment.
func Secure() bool {
	if os.Getuid() != os.Geteuid() || os.Getgid() != os.Getegid() {
		return true
	}
	aux, err := unix.Auxv()
	if err != nil {
		return false
	}
	for _, kv := range aux {
		if kv[0] == atSecure {
			return kv[1] != 0
		}
	}
	return false
}
