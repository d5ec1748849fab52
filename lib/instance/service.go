package instance

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Daemon is one long-running program of an instance: one service
// directory under daemontools or runit, one child of run.
type Daemon struct {
	Name string            // the service's name: queued, send, or a listener's face
	Argv []string          // absolute program path first
	Env  map[string]string // besides control/environment
	User string            // run as this user (setuidgid / chpst -u); "" for none
}

// Daemons returns the daemons of the instance in start order: the
// injector first, then the runner, then each listener.
func (in *Instance) Daemons(s *Settings) []Daemon {
	prog := func(name string) string {
		if s.BinDir == "" {
			return name
		}
		return filepath.Join(s.BinDir, name)
	}
	q, c := in.Queue(), in.Control()
	ds := []Daemon{
		{Name: "queued", Argv: []string{prog("gw-queued"), "--queue", q, "--socket", in.InjectSocket()}, User: s.Users.Queue},
		{Name: "send", Argv: []string{prog("gw-send"), "--queue", q, "--control-dir", c}, User: s.Users.Queue},
	}
	for _, l := range s.Listeners {
		if l.Proto == "scan" {
			ds = append(ds, in.scanProxy(l, s, prog))
			continue
		}
		p, user := "gw-smtpd", s.Users.SMTPD
		if l.Proto == "qmtp" {
			p, user = "gw-qmtpd", s.Users.QMTPD
		}
		argv := []string{prog(p), "--listen", l.Addr, "--acl", in.Path("acl", l.ACL+".db"), "--control-dir", c}
		if user != "" {
			// The listener binds (port 25 needs root) and then drops to
			// user itself, checking that the drop took (gw-smtpd(8)).
			argv = append(argv, "--user", user)
		}
		if !hasFlag(l.Args, "rates") {
			// Rate counts and bans outlive a restart in a file of the
			// listener's own: standalone it keeps the file open as its
			// one writer, so two listeners cannot share one.
			argv = append(argv, "--rates", in.RatesFile(l))
		}
		argv = append(argv, l.Args...)
		env := map[string]string{"GW_QUEUED": in.InjectSocket()}
		if l.Proto == "smtp" && slices.Contains(s.Scan, l.Face) {
			// gw-scan(8) as qmail-queue: it reads the instance's control
			// files and hands clean mail on to GW_QUEUED.
			env["QMAILQUEUE"] = prog("gw-scan")
			env["GW_CONTROL_DIR"] = c
		}
		ds = append(ds, Daemon{Name: l.Face, Argv: argv, Env: env})
	}
	return append(ds, in.dmarcReporters(s, prog)...)
}

// DMARCDaemon is the name of the service that mails DMARC aggregate
// reports; a face may not take it.
const DMARCDaemon = "dmarc"

// dmarcReporters are the services that mail the DMARC aggregate reports
// of the instance: one gw-dmarc report --every 24h for each database an
// SMTP listener records results into (its --dmarc-reports), none when no
// listener records any. It runs as the smtpd user, who owns state/ and
// writes the database, and queues through gw-queued as the listeners do.
func (in *Instance) dmarcReporters(s *Settings, prog func(string) string) []Daemon {
	var ds []Daemon
	seen := map[string]bool{}
	for _, l := range s.Listeners {
		db := dmarcReports(l)
		if l.Proto != "smtp" || db == "" || seen[db] {
			continue
		}
		seen[db] = true
		name := DMARCDaemon
		if len(ds) > 0 {
			name += "-" + l.Face
		}
		ds = append(ds, Daemon{Name: name, User: s.Users.SMTPD,
			Argv: []string{prog("gw-dmarc"), "--control-dir", in.Control(), "--db", db, "report", "--every", "24h"},
			Env:  map[string]string{"GW_QUEUED": in.InjectSocket()}})
	}
	return ds
}

// RatesFile is the bbolt file where listener l keeps its rate counts and
// bans (gw-state(5)): state/smtpd/rates-FACE.db, or state/qmtpd/ for a
// QMTP face, in the directory of the user it runs as.
func (in *Instance) RatesFile(l Listener) string {
	return in.Path("state", stateRole(l), "rates-"+l.Face+".db")
}

// stateRole is the directory below state/ of listener l's user.
func stateRole(l Listener) string {
	if l.Proto == "qmtp" {
		return "qmtpd"
	}
	return "smtpd"
}

// dropDMARCServices removes the report services no listener asks for any
// more (its --dmarc-reports gone, or the listener): left in place, a
// supervisor would go on mailing reports of a database nothing fills.
func (in *Instance) dropDMARCServices(s *Settings) error {
	want := map[string]bool{}
	for _, d := range in.dmarcReporters(s, func(p string) string { return p }) {
		want[d.Name] = true
	}
	ents, err := os.ReadDir(in.Path("service"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if (n == DMARCDaemon || strings.HasPrefix(n, DMARCDaemon+"-")) && !want[n] {
			if err := os.RemoveAll(in.Path("service", n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasFlag reports whether args, a listener's own arguments from
// control/listeners, give --name (as "--name" or "--name=value"): the
// admin's choice then stands.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") || a == "-"+name || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}

// listenerUser is the user listener l runs as once it dropped root.
func (s *Settings) listenerUser(l Listener) string {
	if l.Proto == "qmtp" {
		return s.Users.QMTPD
	}
	return s.Users.SMTPD
}

// ratesFiles makes each listener's rates file, empty (bbolt lays one
// out on first open), its user's own and private (0600): the listener
// opens it after it dropped root, in its user's directory below state/.
func (in *Instance) ratesFiles(s *Settings) error {
	root := os.Geteuid() == 0
	for _, l := range s.Listeners {
		if (l.Proto != "smtp" && l.Proto != "qmtp") || hasFlag(l.Args, "rates") {
			continue
		}
		u := s.listenerUser(l)
		if !root {
			u = ""
		}
		if err := ratesFile(in.RatesFile(l), u); err != nil {
			return err
		}
	}
	return nil
}

// dmarcReports is the database a listener's arguments record DMARC
// results into, "" when they record none. A relative path is the
// instance directory's, where the run scripts start.
func dmarcReports(l Listener) string {
	for i, a := range l.Args {
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			a = "-" + a // the flag parser takes one dash as well as two
		}
		if v, ok := strings.CutPrefix(a, "--dmarc-reports="); ok {
			return v
		}
		if a == "--dmarc-reports" && i+1 < len(l.Args) {
			return l.Args[i+1]
		}
	}
	return ""
}

// ratesFile makes path an empty file if missing and gives it to user
// ("" leaves the owner) with mode 0600. Its directory belongs to a
// daemon's user, who may have put a link or a special file at path: it is opened
// without following a link, must be a regular file of one name, and is
// changed through its descriptor, so that gw-instance, run as root, never
// hands another file to that user.
func ratesFile(path, user string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || (ok && st.Nlink != 1) {
		return fmt.Errorf("%s is not a regular file of one name: remove it, then run gw-instance services again", path)
	}
	if user != "" {
		uid, gid, err := lookupIDs(user)
		if err != nil {
			return err
		}
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	return f.Chmod(0o600)
}

// scanProxy is gw-scan(8) as an SMTP proxy (the amavisd-new tradition):
// it takes mail on l.Addr, scans it and relays it to the next hop given
// in l's arguments (--next-hop, default 127.0.0.1:10025), answering its
// client only after the next hop did. It runs as the smtpd user, who owns
// quarantine/.
func (in *Instance) scanProxy(l Listener, s *Settings, prog func(string) string) Daemon {
	argv := []string{prog("gw-scan"), "--control-dir", in.Control(), "--quarantine", in.Path("quarantine"),
		"proxy", "--listen", l.Addr}
	return Daemon{Name: l.Face, Argv: append(argv, l.Args...), User: s.Users.SMTPD}
}

// Environment is what a daemon gets besides the supervisor's environment:
// control/environment, then the daemon's own.
func (d Daemon) Environment(s *Settings) map[string]string {
	env := map[string]string{}
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range d.Env {
		env[k] = v
	}
	return env
}

// quote quotes s for sh.
func quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+[]") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

// runScript renders d's ./run for flavour: exec, environment through envdir
// (chpst -e), privilege drop through setuidgid (chpst -u).
func (in *Instance) runScript(d Daemon, flavour string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# %s of gw instance %s, written by gw-instance(8) from control/: edit\n", d.Name, in.Name)
	fmt.Fprintf(&b, "# control/listeners, users, environment, then run gw-instance services %s.\n", in.Name)
	b.WriteString("exec 2>&1\n")
	fmt.Fprintf(&b, "cd %s || exit 111\n", quote(in.Dir()))
	env := quote(filepath.Join("service", d.Name, "env"))
	if flavour == "daemontools" {
		fmt.Fprintf(&b, "exec envdir %s ", env)
		if d.User != "" {
			fmt.Fprintf(&b, "setuidgid %s ", quote(d.User))
		}
	} else {
		fmt.Fprintf(&b, "exec chpst -e %s ", env)
		if d.User != "" {
			fmt.Fprintf(&b, "-u %s ", quote(d.User))
		}
	}
	b.WriteString(quoteAll(d.Argv) + "\n")
	return b.String()
}

// logScript renders log/run: multilog or svlogd into log/main, stamped.
func logScript(flavour, user string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	if flavour == "daemontools" {
		b.WriteString("exec ")
		if user != "" {
			fmt.Fprintf(&b, "setuidgid %s ", quote(user))
		}
		b.WriteString("multilog t s1000000 n20 ./main\n")
	} else {
		b.WriteString("exec ")
		if user != "" {
			fmt.Fprintf(&b, "chpst -u %s ", quote(user))
		}
		b.WriteString("svlogd -tt ./main\n")
	}
	return b.String()
}

// WriteServices (re)writes the service directory of every daemon from the
// instance's settings: run, log/run, env/ and log/main/. Files a supervisor
// created (supervise/, the logs) are left alone; a changed run script takes
// effect at the service's next restart.
func (in *Instance) WriteServices() error {
	s, err := in.Settings()
	if err != nil {
		return err
	}
	// state/ first: the listeners' arguments may move with their
	// databases into the new layout before the run scripts name them.
	if err := in.setState(s); err != nil {
		return err
	}
	if os.Geteuid() == 0 && s.Users != (Users{}) {
		if err := in.migrateState(s); err != nil {
			return err
		}
	}
	// The listeners' rules: compiled again when older than their source
	// or unreadable by this gw (a layout of an older version).
	for _, l := range s.Listeners {
		if !l.HasACL() {
			continue
		}
		if err := in.CompileACL(l.ACL, false); err != nil {
			return err
		}
	}
	if err := in.dropDMARCServices(s); err != nil {
		return err
	}
	for _, d := range in.Daemons(s) {
		dir := in.Path("service", d.Name)
		if err := os.MkdirAll(filepath.Join(dir, "log", "main"), 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "env"), 0o755); err != nil {
			return err
		}
		if err := writeEnvDir(filepath.Join(dir, "env"), d.Environment(s)); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "run"), in.runScript(d, s.Flavour), 0o755); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "log", "run"), logScript(s.Flavour, s.Users.Log), 0o755); err != nil {
			return err
		}
		if s.Users.Log != "" && os.Geteuid() == 0 {
			if err := chownTo(filepath.Join(dir, "log", "main"), s.Users.Log); err != nil {
				return err
			}
		}
	}
	if s.Users.Queue != "" && os.Geteuid() == 0 {
		if err := chownTree(in.Queue(), s.Users.Queue); err != nil {
			return err
		}
	}
	if s.Users.SMTPD != "" && os.Geteuid() == 0 {
		// gw-scan, the smtpd face's QMAILQUEUE or proxy, holds messages
		// in quarantine/ as the smtpd user.
		if err := chownTree(in.Path("quarantine"), s.Users.SMTPD); err != nil {
			return err
		}
	}
	if err := in.ratesFiles(s); err != nil {
		return err
	}
	return in.setAccess(s)
}

// writeEnvDir makes dir hold exactly env, one file a variable, as envdir
// and chpst -e read them.
func writeEnvDir(dir string, env map[string]string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := env[e.Name()]; !ok {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for k, v := range env {
		if err := writeFile(filepath.Join(dir, k), v+"\n", 0o644); err != nil {
			return err
		}
	}
	return nil
}

func lookupIDs(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func chownTo(path, name string) error {
	uid, gid, err := lookupIDs(name)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// chownTree gives root and everything below it to the user name, by
// descriptors (giveTree): the user may be changing the tree meanwhile.
func chownTree(root, name string) error {
	uid, gid, err := lookupIDs(name)
	if err != nil {
		return err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "chown", Path: root, Err: err}
	}
	return chownBelow(fd, root, uid, gid)
}

// LinkName is the name of daemon's link in a supervisor's scan directory.
func (in *Instance) LinkName(daemon string) string { return in.Name + "-" + daemon }

// Link makes svscan's or runsvdir's directory scan hold a symbolic link
// to each of the instance's service directories, named instance-daemon.
// The scanner starts them within five seconds. Links that exist already
// are left as they are.
func (in *Instance) Link(scan string) ([]string, error) {
	s, err := in.Settings()
	if err != nil {
		return nil, err
	}
	var made []string
	for _, d := range in.Daemons(s) {
		link := filepath.Join(scan, in.LinkName(d.Name))
		target := in.Path("service", d.Name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		if err := os.Symlink(target, link); err != nil {
			return made, err
		}
		made = append(made, link)
	}
	return made, nil
}

// Unlink removes the instance's links from scan. The scanner then stops the
// services (runsvdir sends TERM to the runsv of a vanished directory;
// under daemontools, svc -dx the service directories as well).
func (in *Instance) Unlink(scan string) ([]string, error) {
	ents, err := os.ReadDir(scan)
	if err != nil {
		return nil, err
	}
	var gone []string
	prefix := in.Dir() + string(filepath.Separator)
	for _, e := range ents {
		link := filepath.Join(scan, e.Name())
		if t, err := os.Readlink(link); err == nil && strings.HasPrefix(t, prefix) {
			if err := os.Remove(link); err != nil {
				return gone, err
			}
			gone = append(gone, link)
		}
	}
	return gone, nil
}

// Service is what a supervisor says of one service directory.
type Service struct {
	Name       string
	Supervised bool // a supervise or runsv holds the directory
	Up         bool
	PID        int
}

// ServiceStatus reads dir/supervise/status as svstat does: the first 18
// bytes, common to daemontools and runit, pid little-endian at 12. A
// supervisor runs when its supervise/ok FIFO has a reader (svok).
func ServiceStatus(dir string) Service {
	s := Service{Name: filepath.Base(dir)}
	ok, err := os.OpenFile(filepath.Join(dir, "supervise", "ok"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return s
	}
	ok.Close()
	s.Supervised = true
	b, err := os.ReadFile(filepath.Join(dir, "supervise", "status"))
	if err != nil || len(b) < 18 {
		return s
	}
	s.PID = int(binary.LittleEndian.Uint32(b[12:16]))
	s.Up = s.PID != 0
	return s
}

// Status is an instance at a glance, for list and remove.
type Status struct {
	Messages int
	Services []Service
	Running  int // pid of gw-instance run, 0 if none
}

// Status reads the supervisors' view of every service directory of the
// instance, and whether gw-instance run runs it.
func (in *Instance) Status() Status {
	var st Status
	st.Messages, _ = in.queueMessages()
	ents, _ := os.ReadDir(in.Path("service"))
	names := []string{}
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		st.Services = append(st.Services, ServiceStatus(in.Path("service", n)))
	}
	st.Running = in.runPID()
	if st.Running != 0 {
		for i := range st.Services {
			st.Services[i].Up = true
		}
	}
	return st
}

// runPID returns the pid in state/run.pid when that process lives and is
// gw-instance run of this instance, 0 otherwise, with why a file there
// was not believed.
func (in *Instance) runPID() int {
	pid, _ := in.readRunPID()
	return pid
}
