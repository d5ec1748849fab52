// Package privilege drops a daemon's root privileges after it bound its
// sockets, and checks that the drop took (OpenSMTPD's order: groups, gid,
// uid; then every thread of the process must show no trace of root).
package privilege

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Drop switches the whole process to the user named name and its primary
// group, with no supplementary groups.
//
// On Linux the credentials belong to each thread, and a Go program has
// several before main runs. The calls of package syscall (Go 1.16 on) are
// made on every thread of the process; the raw system calls (as
// golang.org/x/sys/unix's Setgroups makes) change only the thread that
// happens to run them, and the others keep root's groups. So the drop goes
// through syscall, and its check reads every thread's status.
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
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if err := CheckThreads(uid, gid); err != nil {
		return fmt.Errorf("privileges not dropped: %w", err)
	}
	if syscall.Setuid(0) == nil {
		return fmt.Errorf("privileges not dropped: setuid(0) succeeded")
	}
	return nil
}

// CheckThreads reads /proc/self/task/*/status and fails unless every
// thread runs with real, effective, saved and filesystem uid uid, the same
// four gids gid, and no supplementary group but gid.
func CheckThreads(uid, gid int) error {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("unable to read the threads' credentials in /proc/self/task: %v", err)
	}
	for _, path := range tasks {
		st, err := ReadStatus(path)
		if err != nil {
			// A thread may exit between the glob and the read.
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
		if bad := st.Differs(uid, gid); bad != "" {
			return fmt.Errorf("thread %s: %s", filepath.Base(filepath.Dir(path)), bad)
		}
	}
	return nil
}

// Status is a thread's credentials as /proc/PID/task/TID/status gives them.
type Status struct {
	Uid, Gid []int // real, effective, saved, filesystem
	Groups   []int
}

// ReadStatus reads the Uid:, Gid: and Groups: lines of a status file.
func ReadStatus(path string) (Status, error) {
	var st Status
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *[]int
		switch key {
		case "Uid":
			dst = &st.Uid
		case "Gid":
			dst = &st.Gid
		case "Groups":
			dst = &st.Groups
		default:
			continue
		}
		for _, w := range strings.Fields(val) {
			n, err := strconv.Atoi(w)
			if err != nil {
				return st, fmt.Errorf("%s: %s: %q is not a number", path, key, w)
			}
			*dst = append(*dst, n)
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if len(st.Uid) != 4 || len(st.Gid) != 4 {
		return st, fmt.Errorf("%s: no Uid: or Gid: line of four ids", path)
	}
	return st, nil
}

// Differs says how st differs from a thread that runs as uid and gid
// alone, or "" when it does not.
func (st Status) Differs(uid, gid int) string {
	for _, u := range st.Uid {
		if u != uid {
			return fmt.Sprintf("uids %v, want %d", st.Uid, uid)
		}
	}
	for _, g := range st.Gid {
		if g != gid {
			return fmt.Sprintf("gids %v, want %d", st.Gid, gid)
		}
	}
	for _, g := range st.Groups {
		if g != gid {
			return fmt.Sprintf("supplementary groups %v, want only %d", st.Groups, gid)
		}
	}
	return ""
}
