// Package privilege drops a daemon's root privileges after it bound its
// sockets, and checks that the drop took (OpenSMTPD's order: groups, gid,
// uid; then Getresuid and Getresgid must show no trace of root).
package privilege

import (
	"fmt"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// Drop switches the whole process to the user named name and its primary
// group, with no supplementary groups.
func Drop(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s: non-numeric uid or gid", name)
	}
	if uid == 0 {
		return fmt.Errorf("user %s is root", name)
	}
	if err := unix.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := unix.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	r, e, s := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid {
		return fmt.Errorf("privileges not dropped: uid %d/%d/%d gid %d/%d/%d", r, e, s, rg, eg, sg)
	}
	if unix.Setuid(0) == nil {
		return fmt.Errorf("privileges not dropped: setuid(0) succeeded")
	}
	return nil
}
