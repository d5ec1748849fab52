package instance

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"gw/lib/control"
)

// Listener is one line of control/listeners: a face of the instance, the
// protocol it speaks, the address it listens on, the ACL (a tcprules source
// in acl/, compiled to acl/NAME.db) and extra arguments for the daemon.
type Listener struct {
	Face  string
	Proto string // smtp or qmtp
	Addr  string // host:port
	ACL   string // file name in acl/
	Args  []string
}

func (l Listener) valid() error {
	if !validName.MatchString(l.Face) {
		return usagef("bad face name %q", l.Face)
	}
	if l.Face == "queued" || l.Face == "send" || l.Face == DMARCDaemon || strings.HasPrefix(l.Face, DMARCDaemon+"-") {
		return usagef("face name %q is a daemon's name", l.Face)
	}
	if l.Proto != "smtp" && l.Proto != "qmtp" && l.Proto != "scan" {
		return usagef("listener %s: protocol %q: smtp, qmtp or scan", l.Face, l.Proto)
	}
	host, port, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return usagef("listener %s: address %q: %v", l.Face, l.Addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return usagef("listener %s: port %q", l.Face, port)
	}
	if host != "" && net.ParseIP(host) == nil {
		return usagef("listener %s: %q is not an IP address", l.Face, host)
	}
	if l.Proto == "scan" {
		if l.ACL != noACL {
			return usagef("listener %s: a scan proxy has no ACL (%q): it listens where only the listeners in front of it reach", l.Face, l.ACL)
		}
		return nil
	}
	if l.ACL == "" || strings.ContainsAny(l.ACL, "/ ") || strings.HasSuffix(l.ACL, ".db") {
		return usagef("listener %s: ACL %q: a file name in acl/, without .db", l.Face, l.ACL)
	}
	return nil
}

func (l Listener) String() string {
	return strings.Join(append([]string{l.Face, l.Proto, l.Addr, l.ACL}, l.Args...), " ")
}

// noACL stands in the acl column for a listener without rules: the scan
// proxy, which takes mail only from the listeners in front of it.
const noACL = "-"

// HasACL reports whether the listener looks its clients up in rules.
func (l Listener) HasACL() bool { return l.Proto != "scan" }

// defaultACL is the acl column's value when it is left out.
func defaultACL(proto string) string {
	if proto == "scan" {
		return noACL
	}
	return "tcp." + proto
}

const listenersHeader = "# face proto address acl [daemon arguments]; see gw-instance(8)\n"

func formatListeners(ls []Listener) string {
	var b strings.Builder
	b.WriteString(listenersHeader)
	for _, l := range ls {
		b.WriteString(l.String() + "\n")
	}
	return b.String()
}

// Listeners reads control/listeners.
func (in *Instance) Listeners() ([]Listener, error) {
	ents, _, err := control.Dir(in.Control()).List("listeners")
	if err != nil {
		return nil, err
	}
	var ls []Listener
	seen := map[string]bool{}
	for i, e := range ents {
		f := strings.Fields(e)
		if len(f) < 3 {
			return nil, usagef("%s: line %d: want face proto address [acl [args]]", in.Path("control", "listeners"), i+1)
		}
		l := Listener{Face: f[0], Proto: f[1], Addr: f[2]}
		if len(f) > 3 {
			l.ACL, l.Args = f[3], f[4:]
		} else {
			l.ACL = defaultACL(l.Proto)
		}
		if err := l.valid(); err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path("control", "listeners"), err)
		}
		if seen[l.Face] {
			return nil, usagef("%s: face %s twice", in.Path("control", "listeners"), l.Face)
		}
		seen[l.Face] = true
		ls = append(ls, l)
	}
	return ls, nil
}

// SetListeners replaces control/listeners.
func (in *Instance) SetListeners(ls []Listener) error {
	for _, l := range ls {
		if err := l.valid(); err != nil {
			return err
		}
	}
	return writeFile(in.Path("control", "listeners"), formatListeners(ls), 0o644)
}

// AddListener adds l, or replaces the listener of the same face, writes
// the ACL source if missing and rewrites the service directories.
func (in *Instance) AddListener(l Listener) error {
	if l.ACL == "" {
		l.ACL = defaultACL(l.Proto)
	}
	if err := l.valid(); err != nil {
		return err
	}
	ls, err := in.Listeners()
	if err != nil {
		return err
	}
	out := []Listener{}
	for _, x := range ls {
		if x.Face != l.Face {
			out = append(out, x)
		}
	}
	out = append(out, l)
	if err := in.SetListeners(out); err != nil {
		return err
	}
	if !l.HasACL() {
		return in.WriteServices()
	}
	def := aclText([]string{"127."})
	if l.Proto == "qmtp" {
		def = qmtpACL
	}
	if err := writeNew(in.Path("acl", l.ACL), def, false); err != nil {
		return err
	}
	if err := in.CompileACL(l.ACL, false); err != nil {
		return err
	}
	return in.WriteServices()
}

// RemoveListener drops the listener of face and its service directory.
func (in *Instance) RemoveListener(face string) error {
	ls, err := in.Listeners()
	if err != nil {
		return err
	}
	var out []Listener
	for _, x := range ls {
		if x.Face != face {
			out = append(out, x)
		}
	}
	if len(out) == len(ls) {
		return usagef("instance %s has no listener %s", in.Name, face)
	}
	if err := in.SetListeners(out); err != nil {
		return err
	}
	if err := os.RemoveAll(in.Path("service", face)); err != nil {
		return err
	}
	return in.WriteServices()
}

// Users says which user each kind of daemon runs as. An empty field means
// no privilege drop (a test, or make run as an ordinary user).
type Users struct {
	Queue string // gw-queued and gw-send: they write the queue
	SMTPD string // gw-smtpd, which binds and then drops to it itself
	QMTPD string
	Log   string // multilog / svlogd
}

func (u Users) format() string {
	var b strings.Builder
	b.WriteString("# role:user; the users daemons run as (queue, smtpd, qmtpd, log)\n")
	for _, p := range [][2]string{{"queue", u.Queue}, {"smtpd", u.SMTPD}, {"qmtpd", u.QMTPD}, {"log", u.Log}} {
		if p[1] != "" {
			fmt.Fprintf(&b, "%s:%s\n", p[0], p[1])
		}
	}
	return b.String()
}

// ParseUsers reads role:user pairs.
func ParseUsers(pairs []string) (Users, error) {
	var u Users
	for _, p := range pairs {
		role, user, ok := strings.Cut(p, ":")
		if !ok || user == "" || strings.ContainsAny(user, " '\"$`\\") {
			return u, usagef("user %q: want role:user", p)
		}
		switch role {
		case "queue":
			u.Queue = user
		case "smtpd":
			u.SMTPD = user
		case "qmtpd":
			u.QMTPD = user
		case "log":
			u.Log = user
		default:
			return u, usagef("user %q: role is queue, smtpd, qmtpd or log", p)
		}
	}
	return u, nil
}

// Settings are the instance's own control files, read together.
type Settings struct {
	Listeners []Listener
	Users     Users
	Flavour   string
	BinDir    string
	Env       []string
	Scan      []string // faces with gw-scan as QMAILQUEUE (control/scan)
}

// Settings reads the instance's settings.
func (in *Instance) Settings() (*Settings, error) {
	d := control.Dir(in.Control())
	s := &Settings{}
	var err error
	if s.Listeners, err = in.Listeners(); err != nil {
		return nil, err
	}
	pairs, _, err := d.List("users")
	if err != nil {
		return nil, err
	}
	if s.Users, err = ParseUsers(pairs); err != nil {
		return nil, fmt.Errorf("%s: %w", in.Path("control", "users"), err)
	}
	if s.Flavour, _, err = d.Line("supervisor"); err != nil {
		return nil, err
	}
	if s.Flavour == "" {
		s.Flavour = "runit"
	}
	if s.Flavour != "runit" && s.Flavour != "daemontools" {
		return nil, usagef("%s: %q: runit or daemontools", in.Path("control", "supervisor"), s.Flavour)
	}
	if s.BinDir, _, err = d.Line("bindir"); err != nil {
		return nil, err
	}
	if s.Env, _, err = d.List("environment"); err != nil {
		return nil, err
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, "/ ") {
			return nil, usagef("%s: %q: want KEY=VALUE", in.Path("control", "environment"), kv)
		}
	}
	if s.Scan, _, err = d.List("scan"); err != nil {
		return nil, err
	}
	return s, nil
}
