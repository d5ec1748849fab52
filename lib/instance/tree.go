// Package instance keeps gw's instances on disk: the tree of one instance
// (control, queue, acl, state, quarantine, service), the daemons it runs,
// their daemontools and runit service directories, the routes that hand a
// domain to another instance over QMTP, and an embedded supervisor that runs
// an instance in the foreground.
//
// Implementation summary. What an instance runs is written down in its own
// control files, in qmail's style, so that every command can rebuild the
// service directories from them:
//
//	control/listeners   one listener a line: face proto address [acl [args...]]
//	control/users       role:user lines (queue, smtpd, qmtpd, log); none: no drop
//	control/supervisor  runit or daemontools: which tools the run scripts call
//	control/bindir      where the gw programs are
//	control/environment KEY=VALUE lines given to every daemon (GW_DNS, …)
//
// Daemons turns those into commands; service.go renders the commands as
// run scripts, run.go starts the same commands itself. The two never
// disagree because neither builds a command line of its own.
//
// gw-instance only writes files: it never signals a daemon. A changed
// listener takes effect when the supervisor restarts the service.
package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"gw/lib/acl"
	"gw/lib/queue"
)

// DefaultRoot is where instances live unless --root says otherwise.
const DefaultRoot = "/var/gw"

// Subdirectories of an instance, as ARCHITECTURE.md lays them out.
var subdirs = []string{"control", "queue", "inject", "acl", "state", "quarantine", "service"}

// ErrUsage marks bad input: a name, an address or an option that cannot work.
// Callers exit 100 on it, 111 on anything else.
var ErrUsage = errors.New("usage")

// usagef returns an error that wraps ErrUsage.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// validName is what an instance or face may be called: it becomes a
// directory name and part of a service name in /service.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Instance is one instance under a root.
type Instance struct {
	Root string // absolute
	Name string
}

// Open returns the instance name under root, which must exist.
func Open(root, name string) (*Instance, error) {
	if !validName.MatchString(name) {
		return nil, usagef("bad instance name %q (lowercase letters, digits, - and _)", name)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	in := &Instance{Root: abs, Name: name}
	if _, err := os.Stat(in.Path("control")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("no instance %s under %s", name, abs)
		}
		return nil, err
	}
	return in, nil
}

// Dir is the instance's directory.
func (in *Instance) Dir() string { return filepath.Join(in.Root, in.Name) }

// Path joins elem to the instance's directory.
func (in *Instance) Path(elem ...string) string {
	return filepath.Join(append([]string{in.Dir()}, elem...)...)
}

// Queue is the instance's queue directory.
func (in *Instance) Queue() string { return in.Path("queue") }

// Control is the instance's control directory.
func (in *Instance) Control() string { return in.Path("control") }

// Names lists the instances under root: every directory with a control/.
func Names(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() || !validName.MatchString(e.Name()) {
			continue
		}
		if st, err := os.Stat(filepath.Join(root, e.Name(), "control")); err == nil && st.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Options are what create writes into a new instance.
type Options struct {
	Me        string   // control/me; default: the host's name
	RcptHosts []string // control/rcpthosts; default: Me
	Relay     []string // tcprules prefixes that get RELAYCLIENT on the smtpd face; default 127.
	SMTP      []string // addresses of the main SMTP listener (face smtpd)
	QMTP      []string // addresses of a QMTP listener (face qmtpd)
	Smarthost string   // control/smtproutes ":host[:port]"
	Users     Users    // privilege drop; empty: none
	Flavour   string   // runit or daemontools
	BinDir    string   // where the gw programs are
	Env       []string // KEY=VALUE for every daemon
	Exist     bool     // reuse an existing instance: fill in what is missing
	Scan      bool     // gw-scan as QMAILQUEUE of every SMTP face (control/scan)
}

// Create makes the instance name under root with opts, writes its service
// directories and compiles its ACLs. Creating an instance that exists is an
// error unless opts.Exist, in which case only missing files are written.
func Create(root, name string, opts Options) (*Instance, error) {
	if !validName.MatchString(name) {
		return nil, usagef("bad instance name %q (lowercase letters, digits, - and _)", name)
	}
	if opts.Flavour == "" {
		opts.Flavour = "runit"
	}
	if opts.Flavour != "runit" && opts.Flavour != "daemontools" {
		return nil, usagef("supervisor %q: runit or daemontools", opts.Flavour)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	in := &Instance{Root: abs, Name: name}
	if _, err := os.Stat(in.Path("control")); err == nil && !opts.Exist {
		return nil, usagef("instance %s exists under %s", name, abs)
	}
	if opts.Me == "" {
		if opts.Me, err = os.Hostname(); err != nil {
			return nil, err
		}
	}
	if len(opts.RcptHosts) == 0 {
		opts.RcptHosts = []string{opts.Me}
	}
	if len(opts.Relay) == 0 {
		opts.Relay = []string{"127."}
	}
	var ls []Listener
	for i, a := range opts.SMTP {
		ls = append(ls, Listener{Face: faceName("smtpd", i), Proto: "smtp", Addr: a, ACL: "tcp.smtp"})
	}
	for i, a := range opts.QMTP {
		ls = append(ls, Listener{Face: faceName("qmtpd", i), Proto: "qmtp", Addr: a, ACL: "tcp.qmtp"})
	}
	for _, l := range ls {
		if err := l.valid(); err != nil {
			return nil, err
		}
	}
	for _, kv := range opts.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, "/ \n") {
			return nil, usagef("environment %q: want KEY=VALUE", kv)
		}
	}
	for _, d := range subdirs {
		if err := os.MkdirAll(in.Path(d), 0o755); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"queue", "inject", "quarantine"} {
		if err := os.Chmod(in.Path(d), 0o750); err != nil {
			return nil, err
		}
	}
	if err := queue.Init(in.Queue()); err != nil {
		return nil, fmt.Errorf("queue %s: %w", in.Queue(), err)
	}
	files := map[string]string{
		"control/me":          opts.Me + "\n",
		"control/rcpthosts":   lines(opts.RcptHosts),
		"control/supervisor":  opts.Flavour + "\n",
		"control/bindir":      opts.BinDir + "\n",
		"control/listeners":   formatListeners(ls),
		"control/users":       opts.Users.format(),
		"control/environment": envHeader + lines(opts.Env),
		"acl/tcp.smtp":        aclText(opts.Relay),
		"acl/tcp.qmtp":        qmtpACL,
	}
	if opts.Scan {
		var faces []string
		for _, l := range ls {
			if l.Proto == "smtp" {
				faces = append(faces, l.Face)
			}
		}
		files["control/scan"] = scanHeader + lines(faces)
	}
	if opts.Smarthost != "" {
		files["control/smtproutes"] = ":" + opts.Smarthost + "\n"
	}
	for name, text := range files {
		if err := writeNew(in.Path(name), text, !opts.Exist); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"tcp.smtp", "tcp.qmtp"} {
		if err := in.CompileACL(f, !opts.Exist); err != nil {
			return nil, err
		}
	}
	if err := in.WriteServices(); err != nil {
		return nil, err
	}
	return in, nil
}

const scanHeader = "# SMTP faces whose mail gw-scan checks before the queue (QMAILQUEUE), one a line\n"

const envHeader = "# KEY=VALUE, one a line: the environment of every daemon (GW_DNS=host:port, …)\n"

func faceName(base string, i int) string {
	if i == 0 {
		return base
	}
	return fmt.Sprintf("%s%d", base, i+1)
}

func lines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
}

// qmtpACL is the default tcprules source of a QMTP face: the primaries on
// this host, and no one else. GW_PEER marks them as gw instances, whose
// X-Gw-Trace field (the message's qid in the primary) gw-qmtpd logs.
const qmtpACL = "# QMTP clients: the primary instances that hand mail to this one;\n" +
	"# GW_PEER: they are gw instances, believed on the message's qid there\n" +
	"127.:allow,GW_PEER=\"\"\n:deny\n"

// aclText is the default tcprules source of an SMTP face: the relay
// prefixes get RELAYCLIENT, everyone else may connect and send to
// rcpthosts.
func aclText(relay []string) string {
	var b strings.Builder
	b.WriteString("# tcprules(5): who may connect, and who may relay (RELAYCLIENT).\n")
	b.WriteString("# Recompile with: gw-tcprules acl/tcp.smtp.db acl/tcp.smtp.tmp < acl/tcp.smtp\n")
	for _, r := range relay {
		fmt.Fprintf(&b, "%s:allow,RELAYCLIENT=\"\"\n", r)
	}
	b.WriteString(":allow\n")
	return b.String()
}

// writeNew writes text to path by temp file and rename; unless replace, an
// existing file is kept.
func writeNew(path, text string, replace bool) error {
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return nil
		}
	}
	return writeFile(path, text, 0o644)
}

// writeFile replaces path with text atomically.
func writeFile(path, text string, mode os.FileMode) error {
	tmp := path + ".tmp"
	// The temp file is made anew, never opened where it stands: some
	// directories written here (state/) belong to a daemon's user, who
	// could put a link at the temp name to a file gw-instance, run as
	// root, would then overwrite (and chmod). The stale one, or the link,
	// is removed; one put back in between makes the create fail.
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil { // the umask took bits off; by the file, not its name
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// CompileACL compiles acl/name into acl/name.db as gw-tcprules does. Unless
// force, a database newer than its source is left alone.
func (in *Instance) CompileACL(name string, force bool) error {
	src, db := in.Path("acl", name), in.Path("acl", name+".db")
	if !force {
		ss, err1 := os.Stat(src)
		ds, err2 := os.Stat(db)
		if err1 == nil && err2 == nil && !ds.ModTime().Before(ss.ModTime()) && readable(db) {
			return nil
		}
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := acl.Build(f, db, db+".tmp", func(string) {}); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return nil
}

// readable reports whether db opens as a rules database of this gw's
// layout: one compiled by an older gw is compiled again.
func readable(db string) bool {
	d, err := acl.Open(db)
	if err != nil {
		return false
	}
	d.Close()
	return true
}

// Remove deletes the instance's tree. Unless force, it refuses while the
// queue holds a message or a daemon of the instance runs.
func (in *Instance) Remove(force bool) error {
	if !force {
		st := in.Status()
		if st.Messages > 0 {
			return usagef("instance %s: queue holds %d messages (remove --force drops them)", in.Name, st.Messages)
		}
		for _, s := range st.Services {
			if s.Up {
				return usagef("instance %s: service %s runs (stop it first)", in.Name, s.Name)
			}
		}
	}
	return os.RemoveAll(in.Dir())
}
