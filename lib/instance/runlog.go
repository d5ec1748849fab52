package instance

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Rotation of the logs Run keeps, as the daemontools log/run script asks
// of multilog (s1000000 n20).
const (
	runLogMax   = 1000000 // bytes in current before it is rotated
	runLogFiles = 20      // rotated files kept
)

// serviceLog is one daemon's log directory (service/NAME/log/main) as Run
// keeps it when no multilog or svlogd runs: the lines the daemon writes,
// stamped as the instance's log/run script would stamp them, in current,
// rotated to @TAI64N.s files. gw-qstat trace and show read the same
// directory under Run as under svscan or runsvdir.
type serviceLog struct {
	dir     string
	flavour string // daemontools: tai64n stamps; runit: svlogd -tt's
	f       *os.File
	size    int64
}

func openServiceLog(dir, flavour string) (*serviceLog, error) {
	l := &serviceLog{dir: dir, flavour: flavour}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *serviceLog) open() error {
	path := filepath.Join(l.dir, "current")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	// As root, current belongs to whoever owns the directory: the log
	// user's multilog or svlogd takes the directory over under a real
	// supervisor and must be able to append to it.
	if os.Geteuid() == 0 {
		if di, err := os.Stat(l.dir); err == nil {
			if st, ok := di.Sys().(*syscall.Stat_t); ok {
				f.Chown(int(st.Uid), int(st.Gid))
			}
		}
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// line appends text, stamped with t, and rotates current once it is full.
func (l *serviceLog) line(t time.Time, text string) error {
	s := stamp(t, l.flavour) + " " + text + "\n"
	n, err := l.f.WriteString(s)
	l.size += int64(n)
	if err != nil {
		return err
	}
	if l.size >= runLogMax {
		return l.rotate(t)
	}
	return nil
}

// rotate renames current to @TAI64N.s, as multilog and svlogd name a
// finished file, opens a new current and removes the oldest rotated
// files beyond runLogFiles.
func (l *serviceLog) rotate(t time.Time) error {
	l.f.Close()
	cur := filepath.Join(l.dir, "current")
	if err := os.Rename(cur, filepath.Join(l.dir, tai64n(t)+".s")); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(l.dir, "@*.s"))
	sort.Strings(old)
	for len(old) > runLogFiles {
		os.Remove(old[0])
		old = old[1:]
	}
	return l.open()
}

func (l *serviceLog) close() {
	if l.f != nil {
		l.f.Close()
	}
}

// stamp is the stamp the flavour's log program puts before a line:
// multilog t's tai64n, or svlogd -tt's UTC date and time.
func stamp(t time.Time, flavour string) string {
	if flavour == "daemontools" {
		return tai64n(t)
	}
	return t.UTC().Format("2006-01-02_15:04:05.000000000")
}

// tai64n is "@" and the TAI64N label of t, as daemontools counts it:
// 2^62 + 10 + Unix seconds, then nanoseconds.
func tai64n(t time.Time) string {
	var b [12]byte
	sec := uint64(1<<62+10) + uint64(t.Unix())
	nsec := uint32(t.Nanosecond())
	for i := 7; i >= 0; i-- {
		b[i] = byte(sec)
		sec >>= 8
	}
	for i := 11; i >= 8; i-- {
		b[i] = byte(nsec)
		nsec >>= 8
	}
	return "@" + hex.EncodeToString(b[:])
}

// daemonLogs opens the log directory of each daemon; one that cannot be
// opened is named on the terminal and its lines go there only.
func (in *Instance) daemonLogs(ds []Daemon, flavour string, w *prefixWriter) map[string]*serviceLog {
	logs := make(map[string]*serviceLog, len(ds))
	for _, d := range ds {
		l, err := openServiceLog(in.Path("service", d.Name, "log", "main"), flavour)
		if err != nil {
			w.line("gw-instance", fmt.Sprintf("warning: service=%s: its lines go to this terminal only: %v", d.Name, err))
			continue
		}
		logs[d.Name] = l
	}
	return logs
}
