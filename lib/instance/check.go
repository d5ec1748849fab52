package instance

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gw/lib/control"
	"gw/lib/ipme"
	"gw/lib/qstat"
	"gw/lib/queue"
	"gw/lib/route"
)

// Counts is the queue of an instance reduced to numbers, for list.
func (in *Instance) Counts() (qstat.Counts, error) {
	reps := qstat.Load([]qstat.Source{{Instance: in.Name, Dir: in.Queue()}})
	if reps[0].Err != nil {
		return qstat.Counts{}, reps[0].Err
	}
	return qstat.Count(reps[0]), nil
}

func (in *Instance) queueMessages() (int, error) {
	c, err := in.Counts()
	return c.Messages, err
}

// Check lints the instance and returns one sentence a problem: control
// files that are missing or do not parse, routes to instances that do not
// take the domain, ACL databases older than their source, a certificate
// that does not load or expires, permissions that let the wrong users in,
// service directories that differ from what the settings give.
func (in *Instance) Check() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	d := control.Dir(in.Control())

	s, err := in.Settings()
	if err != nil {
		add("%v", err)
		return p
	}
	for _, f := range s.Scan {
		if !slices.ContainsFunc(s.Listeners, func(l Listener) bool { return l.Face == f && l.Proto == "smtp" }) {
			add("control/scan: %q is not an SMTP listener of control/listeners", f)
		}
	}
	if me, ok, err := d.Me(); err != nil {
		add("control/me: %v", err)
	} else if !ok || me == "" {
		add("control/me is missing: every daemon needs the host's name")
	}
	if hosts, ok, err := d.List("rcpthosts"); err != nil {
		add("control/rcpthosts: %v", err)
	} else if !ok || len(hosts) == 0 {
		if len(s.Listeners) > 0 {
			add("control/rcpthosts is empty: the listeners accept mail for no domain")
		}
	}
	for _, f := range numericControls() {
		if line, ok, err := d.Line(f); err != nil {
			add("control/%s: %v", f, err)
		} else if ok && (line == "" || strings.Trim(line, "0123456789") != "") {
			add("control/%s: %q is not a number", f, line)
		}
	}
	for _, proto := range []route.Proto{route.SMTP, route.QMTP, route.LMTP} {
		name := string(proto) + "routes"
		lines, ok, err := d.List(name)
		if err != nil {
			add("control/%s: %v", name, err)
			continue
		}
		if !ok {
			continue
		}
		if _, err := route.Parse(proto, lines); err != nil {
			add("control/%s: %v", name, err)
		}
	}
	p = append(p, in.checkQMTPRoutes()...)
	// gw-send will not start without knowing which hosts are itself
	// (control/moreipme, control/notipme, control/listeners).
	if _, err := ipme.Load(in.Control()); err != nil {
		add("%v", err)
	}
	if bq, ok, err := d.Line("bouncequeue"); err != nil {
		add("control/bouncequeue: %v", err)
	} else if ok && bq != "" {
		if !filepath.IsAbs(bq) {
			bq = filepath.Join(in.Dir(), bq)
		}
		if _, err := os.Stat(filepath.Join(bq, "format")); err != nil {
			add("control/bouncequeue: %s is not a queue: %v", bq, err)
		}
	}

	// ACLs: each listener's database must exist and be newer than its source.
	for _, l := range s.Listeners {
		if !l.HasACL() {
			continue
		}
		src, db := in.Path("acl", l.ACL), in.Path("acl", l.ACL+".db")
		ss, err := os.Stat(src)
		ds, err2 := os.Stat(db)
		switch {
		case err2 != nil:
			add("listener %s: %s: %v (compile it: gw-tcprules %s %s.tmp < %s)", l.Face, db, errors.Unwrap(err2), db, db, src)
		case err == nil && ds.ModTime().Before(ss.ModTime()):
			add("listener %s: %s is older than %s: recompile it with gw-tcprules", l.Face, db, src)
		case !readable(db):
			add("listener %s: %s is not a rules database of this gw (an older layout?): recompile it with gw-tcprules", l.Face, db)
		}
	}
	if dup := duplicateAddrs(s.Listeners); dup != "" {
		add("control/listeners: address %s is used twice", dup)
	}
	if err := checkCert(in.Path("control", "servercert.pem")); err != "" {
		add("control/servercert.pem: %s", err)
	}
	p = append(p, in.checkKeys()...)
	p = append(p, in.checkPermissions(s)...)
	p = append(p, in.checkServices(s)...)
	return p
}

func duplicateAddrs(ls []Listener) string {
	seen := map[string]bool{}
	for _, l := range ls {
		if seen[l.Addr] {
			return l.Addr
		}
		seen[l.Addr] = true
	}
	return ""
}

// numericControls are the control files the programs read as a number,
// as lib/control's registry lists them: one that is not makes the daemon
// refuse to start, so check says so first.
func numericControls() []string {
	var names []string
	for _, f := range control.Registry {
		if f.Kind == control.KindInt {
			names = append(names, f.Name)
		}
	}
	return names
}

// checkCert returns what is wrong with the certificate file, or "".
func checkCert(path string) string {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	pair, err := tls.LoadX509KeyPair(path, path)
	if err != nil {
		return err.Error()
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err.Error()
	}
	switch now := time.Now(); {
	case now.After(c.NotAfter):
		return fmt.Sprintf("expired on %s", c.NotAfter.UTC().Format(time.DateOnly))
	case now.Add(14 * 24 * time.Hour).After(c.NotAfter):
		return fmt.Sprintf("expires on %s, in less than 14 days", c.NotAfter.UTC().Format(time.DateOnly))
	}
	return ""
}

func (in *Instance) checkPermissions(s *Settings) []string {
	var p []string
	for _, dir := range []string{"control", "acl", "service"} {
		st, err := os.Stat(in.Path(dir))
		if err != nil {
			p = append(p, fmt.Sprintf("%s/: %v", dir, err))
			continue
		}
		if st.Mode().Perm()&0o022 != 0 {
			p = append(p, fmt.Sprintf("%s/ is writable by group or others (mode %04o): anyone there can change how the gateway works", dir, st.Mode().Perm()))
		}
	}
	if st, err := os.Stat(in.Queue()); err != nil {
		p = append(p, fmt.Sprintf("queue/: %v", err))
	} else if st.Mode().Perm()&0o007 != 0 {
		p = append(p, fmt.Sprintf("queue/ is open to others (mode %04o)", st.Mode().Perm()))
	}
	if _, err := os.Stat(filepath.Join(in.Queue(), "format")); err != nil {
		p = append(p, fmt.Sprintf("queue/ is not a gw queue: %v (gw-queue --init %s)", err, in.Queue()))
	} else if q, err := queue.OpenReadOnly(in.Queue()); errors.Is(err, queue.ErrUnsafe) {
		// What the daemons and tools will refuse (gw-queue(5), Safe
		// opens): a directory on the way someone else could change.
		p = append(p, fmt.Sprintf("queue/ is refused by gw-send and the queue tools: %v", err))
	} else if err == nil {
		q.Close()
	}
	if s.Users.Queue != "" {
		uid, _, err := lookupIDs(s.Users.Queue)
		if err != nil {
			p = append(p, fmt.Sprintf("control/users: queue user %s: %v", s.Users.Queue, err))
		} else if st, err := os.Stat(in.Queue()); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid {
				p = append(p, fmt.Sprintf("queue/ is not owned by %s (uid %d) but by uid %d", s.Users.Queue, uid, sys.Uid))
			}
			if line := foreignFiles(in.Queue(), s.Users.Queue, uid); line != "" {
				p = append(p, line)
			}
		}
	}
	p = append(p, in.checkAccess(s)...)
	p = append(p, in.checkState(s)...)
	for _, u := range []string{s.Users.SMTPD, s.Users.QMTPD, s.Users.Log} {
		if u == "" {
			continue
		}
		if _, _, err := lookupIDs(u); err != nil {
			p = append(p, fmt.Sprintf("control/users: %s: %v", u, err))
		}
	}
	return p
}

// foreignFiles names the files below the queue dir that the queue user
// (uid) does not own: gw-send refuses them or cannot write them (a journal
// rewritten by a tool run as root stops gw-send on permission denied).
func foreignFiles(dir, user string, uid int) string {
	var names []string
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil // the directory itself: checked above
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid {
			n++
			if len(names) < 3 {
				rel, _ := filepath.Rel(dir, path)
				names = append(names, fmt.Sprintf("%s (uid %d)", rel, sys.Uid))
			}
		}
		return nil
	})
	if n == 0 {
		return ""
	}
	more := ""
	if n > len(names) {
		more = fmt.Sprintf(" and %d more", n-len(names))
	}
	return fmt.Sprintf("queue/: %d files not owned by the queue user %s: %s%s (gw-send refuses or cannot write them: chown -R %s %s)",
		n, user, strings.Join(names, ", "), more, user, dir)
}

// checkServices compares each service directory with what the settings
// make of it now.
func (in *Instance) checkServices(s *Settings) []string {
	var p []string
	for _, d := range in.Daemons(s) {
		run := in.Path("service", d.Name, "run")
		b, err := os.ReadFile(run)
		if err != nil {
			p = append(p, fmt.Sprintf("service %s: %v (gw-instance services %s)", d.Name, err, in.Name))
			continue
		}
		want := in.runScript(d, s.Flavour)
		switch {
		case string(b) == want:
		case strings.Contains(want, " --rates ") && !strings.Contains(string(b), "--rates"):
			// a run script of a gw before listeners kept their counts
			p = append(p, fmt.Sprintf("service %s: run gives no --rates: rate counts and bans are kept in memory and lost at each restart (gw-instance services %s)", d.Name, in.Name))
		default:
			p = append(p, fmt.Sprintf("service %s: run differs from the settings (gw-instance services %s)", d.Name, in.Name))
		}
		if rates := ratesArg(d.Argv); rates != "" {
			if _, err := os.Stat(rates); err != nil {
				p = append(p, fmt.Sprintf("service %s: %v (gw-instance services %s makes it)", d.Name, err, in.Name))
			}
		}
		if st, err := os.Stat(run); err == nil && st.Mode().Perm()&0o100 == 0 {
			p = append(p, fmt.Sprintf("service %s: run is not executable", d.Name))
		}
		if _, err := os.Stat(d.Argv[0]); filepath.IsAbs(d.Argv[0]) && err != nil {
			p = append(p, fmt.Sprintf("service %s: %v", d.Name, err))
		}
	}
	return p
}

// ratesArg is the file a daemon's --rates names, or "".
func ratesArg(argv []string) string {
	for i, a := range argv {
		if a == "--rates" && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

// checkQMTPRoutes checks that each QMTP route to a local instance's
// listener reaches an instance that accepts the domain.
func (in *Instance) checkQMTPRoutes() []string {
	var p []string
	rs, err := in.qmtpRoutes()
	if err != nil {
		return []string{fmt.Sprintf("control/qmtproutes: %v", err)}
	}
	for _, r := range rs {
		sec, err := FindByListener(in.Root, r.relay)
		if err != nil || sec == nil {
			continue // another host: nothing to check here
		}
		hosts, _, _ := control.Dir(sec.Control()).List("rcpthosts")
		if r.domain != "" && r.domain != ":" && !control.NewHosts(hosts).Match(strings.TrimPrefix(r.domain, ".")) {
			p = append(p, fmt.Sprintf("control/qmtproutes: %s goes to instance %s, whose rcpthosts lacks it (gw-instance route %s %s)", r.domain, sec.Name, r.domain, sec.Name))
		}
	}
	return p
}

// hostPort normalises a relay written host:port for comparison with a
// listener address.
func hostPort(s string) string {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), p)
}

// Describe is the instance's line in gw-instance list: its name, its queue
// in numbers and each service's state, as key=value fields.
func Describe(in *Instance) string {
	var b strings.Builder
	b.WriteString(in.Name)
	if c, err := in.Counts(); err != nil {
		b.WriteString(" queue=unreadable")
	} else {
		fmt.Fprintf(&b, " messages=%d", c.Messages)
		for st, n := range c.Msg {
			fmt.Fprintf(&b, " %s=%d", qstat.MsgState(st), n)
		}
	}
	st := in.Status()
	var svcs []string
	for _, s := range st.Services {
		state := "unsupervised"
		switch {
		case s.Up:
			state = "up"
		case s.Supervised:
			state = "down"
		}
		svcs = append(svcs, s.Name+":"+state)
	}
	fmt.Fprintf(&b, " services=%s", strings.Join(svcs, ","))
	if st.Running != 0 {
		fmt.Fprintf(&b, " run=%d", st.Running)
	}
	return b.String()
}

// checkKeys names private keys (the TLS certificate's, the DKIM signing
// keys) that a user beyond root and the listeners' group can read or
// change: the daemons check control/ one level deep, and a key readable
// by any local user lets that user impersonate the gateway.
func (in *Instance) checkKeys() []string {
	var p []string
	keys := []string{in.Path("control", "servercert.pem")}
	filepath.WalkDir(in.Path("control", "dkim"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".key") {
			keys = append(keys, path)
		}
		return nil
	})
	for _, k := range keys {
		fi, err := os.Stat(k)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(in.Dir(), k)
		switch m := fi.Mode().Perm(); {
		case m&0o022 != 0:
			p = append(p, fmt.Sprintf("%s is writable by group or others (mode %04o): anyone there can put their own key in (chmod 0640)", rel, m))
		case m&0o004 != 0:
			p = append(p, fmt.Sprintf("%s, a private key, is readable by every local user (mode %04o): chmod 0640, group of the listeners", rel, m))
		}
	}
	return p
}
