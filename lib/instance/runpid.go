package instance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"gw/lib/trustpath"
)

// state/run.pid says that gw-instance run runs the instance, and run
// refuses to start a second time while it does. The file is read as from
// a stranger: an older layout let the smtpd user write state/, and a pid
// file planted there naming any live process (their own sleep) would keep
// the instance from ever starting. So the pid is believed only from a
// regular file of one link owned by root or the instance's owner, and
// only when /proc shows that process to be gw-instance run of this very
// instance.

// readRunPID returns the pid of the gw-instance run that runs the
// instance, or 0 and, when a run.pid was there and not believed, why.
func (in *Instance) readRunPID() (int, string) {
	name := in.Path("state", "run.pid")
	owner := in.ownerUID()
	f, err := trustpath.OpenFile(name, os.O_RDONLY, 0, fmt.Sprintf("neither root nor the instance's owner (uid %d)", owner), 0, owner)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ""
	}
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return 0, name + ": " + pe.Err.Error()
	} else if err != nil {
		return 0, fmt.Sprintf("%s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, fmt.Sprintf("%s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Sprintf("%s: %q is no pid", name, strings.TrimSpace(string(b)))
	}
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return 0, "" // a stale file of a run that ended: nothing to say
	}
	if !in.isRun(pid) {
		return 0, fmt.Sprintf("%s: pid %d is not gw-instance run of instance %s", name, pid, in.Name)
	}
	return pid, ""
}

// ownerUID is the uid that owns the instance's directory, -1 if unknown.
func (in *Instance) ownerUID() int {
	var st unix.Stat_t
	if err := unix.Stat(in.Dir(), &st); err != nil {
		return -1
	}
	return int(st.Uid)
}

// isRun says whether the process pid is gw-instance run of this instance:
// its program is gw-instance, its arguments end in run NAME, and its
// --root (resolved from its working directory) is this instance's root.
func (in *Instance) isRun(pid int) bool {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		return false
	}
	argv := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
	n := len(argv)
	if n < 3 || filepath.Base(argv[0]) != "gw-instance" || argv[n-2] != "run" || argv[n-1] != in.Name {
		return false
	}
	root := DefaultRoot
	for i, a := range argv[1 : n-2] {
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "root="); ok && strings.HasPrefix(a, "-") {
			root = v
		} else if (a == "--root" || a == "-root") && i+2 < n-2 {
			root = argv[i+2]
		}
	}
	if !filepath.IsAbs(root) {
		cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
		if err != nil {
			return false
		}
		root = filepath.Join(cwd, root)
	}
	if filepath.Clean(root) == in.Root {
		return true
	}
	a, err1 := filepath.EvalSymlinks(root)
	b2, err2 := filepath.EvalSymlinks(in.Root)
	return err1 == nil && err2 == nil && a == b2
}
