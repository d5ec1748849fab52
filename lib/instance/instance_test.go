package instance

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateWritesServicesForEachFlavour(t *testing.T) {
	for _, c := range []struct{ flavour, run, log string }{
		{"runit", "exec chpst -e service/smtpd/env BIN/gw-smtpd --listen 127.0.0.1:2525", "exec chpst -u nobody svlogd -tt ./main"},
		{"daemontools", "exec envdir service/smtpd/env BIN/gw-smtpd --listen 127.0.0.1:2525", "exec setuidgid nobody multilog t s1000000 n20 ./main"},
	} {
		t.Run(c.flavour, func(t *testing.T) {
			root, bin := t.TempDir(), t.TempDir()
			for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd"} {
				os.WriteFile(bin+"/"+p, nil, 0o755)
			}
			c.run = strings.ReplaceAll(c.run, "BIN", bin)
			in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, Flavour: c.flavour,
				BinDir: bin, Users: Users{Log: "nobody"}, Env: []string{"GW_DNS=127.0.0.1:53"}})
			if err != nil {
				t.Fatal(err)
			}
			if run := read(t, in.Path("service", "smtpd", "run")); !strings.Contains(run, c.run) {
				t.Errorf("smtpd/run:\n%s\nwant a line with %q", run, c.run)
			}
			if log := read(t, in.Path("service", "smtpd", "log", "run")); !strings.Contains(log, c.log) {
				t.Errorf("smtpd/log/run:\n%s\nwant %q", log, c.log)
			}
			if env := read(t, in.Path("service", "smtpd", "env", "GW_QUEUED")); env != in.InjectSocket()+"\n" {
				t.Errorf("env/GW_QUEUED = %q", env)
			}
			if env := read(t, in.Path("service", "send", "env", "GW_DNS")); env != "127.0.0.1:53\n" {
				t.Errorf("send env/GW_DNS = %q", env)
			}
			if p := in.Check(); len(p) > 0 {
				t.Errorf("check of a fresh instance: %q", p)
			}
			if _, err := Create(root, "main", Options{}); !errors.Is(err, ErrUsage) {
				t.Errorf("second create: %v, want a usage error", err)
			}
		})
	}
}

func TestBadInputIsRefused(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"../evil", Options{}},
		{"ok", Options{SMTP: []string{"localhost:25"}}},
		{"ok", Options{SMTP: []string{"127.0.0.1:99999"}}},
		{"ok", Options{Flavour: "systemd"}},
		{"ok", Options{Env: []string{"NOEQUALS"}}},
	} {
		if _, err := Create(root, c.name, c.opts); !errors.Is(err, ErrUsage) {
			t.Errorf("Create(%q, %+v) = %v, want a usage error", c.name, c.opts, err)
		}
	}
}

func TestRouteAndUnroute(t *testing.T) {
	root := t.TempDir()
	main, err := Create(root, "main", Options{Me: "gw.test"})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := Create(root, "slow", Options{Me: "slow.gw.test"})
	if err != nil {
		t.Fatal(err)
	}
	line, err := main.Route("Slow.Example.", "slow", RouteOptions{Listen: "127.0.0.1:2209"})
	if err != nil {
		t.Fatal(err)
	}
	if line != "slow.example:127.0.0.1:2209" {
		t.Errorf("route line %q", line)
	}
	if q := read(t, main.Path("control", "qmtproutes")); q != "slow.example:127.0.0.1:2209\n" {
		t.Errorf("main qmtproutes %q", q)
	}
	for _, in := range []*Instance{main, sec} {
		if r := read(t, in.Path("control", "rcpthosts")); !strings.Contains(r, "slow.example\n") {
			t.Errorf("%s rcpthosts %q lacks slow.example", in.Name, r)
		}
	}
	if run := read(t, sec.Path("service", "qmtpd", "run")); !strings.Contains(run, "gw-qmtpd --listen 127.0.0.1:2209") {
		t.Errorf("secondary qmtpd/run:\n%s", run)
	}
	if p := main.Check(); len(p) > 0 {
		t.Errorf("check after route: %q", p)
	}
	if line, _ := main.Route("far.example", "192.0.2.7", RouteOptions{}); line != "far.example:192.0.2.7:209" {
		t.Errorf("remote route line %q", line)
	}
	if name, err := main.Unroute("slow.example"); err != nil || name != "slow" {
		t.Fatalf("Unroute = %q, %v", name, err)
	}
	if q := read(t, main.Path("control", "qmtproutes")); q != "far.example:192.0.2.7:209\n" {
		t.Errorf("main qmtproutes after unroute %q", q)
	}
	if r := read(t, sec.Path("control", "rcpthosts")); strings.Contains(r, "slow.example") {
		t.Errorf("secondary still accepts slow.example: %q", r)
	}
	if _, err := main.Unroute("slow.example"); !errors.Is(err, ErrUsage) {
		t.Errorf("second Unroute: %v, want a usage error", err)
	}
}

func TestBounceInstance(t *testing.T) {
	root := t.TempDir()
	main, err := Create(root, "main", Options{Me: "gw.test", Flavour: "daemontools"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := main.SetBounceInstance("bounce")
	if err != nil {
		t.Fatal(err)
	}
	if q := read(t, main.Path("control", "bouncequeue")); q != b.Queue()+"\n" {
		t.Errorf("bouncequeue %q", q)
	}
	if f := read(t, b.Path("control", "supervisor")); f != "daemontools\n" {
		t.Errorf("bounce instance supervisor %q, want the primary's", f)
	}
	if _, err := main.SetBounceInstance(""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(main.Path("control", "bouncequeue")); !os.IsNotExist(err) {
		t.Errorf("bouncequeue still there: %v", err)
	}
}

func TestScanSetsQMAILQUEUEOfSMTPFaces(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "outside", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, QMTP: []string{"127.0.0.1:2626"},
		BinDir: bin, Scan: true})
	if err != nil {
		t.Fatal(err)
	}
	if env := read(t, in.Path("service", "smtpd", "env", "QMAILQUEUE")); env != bin+"/gw-scan\n" {
		t.Errorf("smtpd env/QMAILQUEUE = %q", env)
	}
	if env := read(t, in.Path("service", "smtpd", "env", "GW_CONTROL_DIR")); env != in.Control()+"\n" {
		t.Errorf("smtpd env/GW_CONTROL_DIR = %q", env)
	}
	for _, d := range []string{"qmtpd", "send", "queued"} {
		if _, err := os.Stat(in.Path("service", d, "env", "QMAILQUEUE")); err == nil {
			t.Errorf("%s gets QMAILQUEUE too", d)
		}
	}
	// Without --scan no face is scanned; a face in control/scan that is
	// not an SMTP listener is a problem for check.
	plain, err := Create(root, "plain", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2527"}, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(plain.Path("service", "smtpd", "env", "QMAILQUEUE")); err == nil {
		t.Errorf("QMAILQUEUE without --scan")
	}
	os.WriteFile(plain.Path("control", "scan"), []byte("qmtpd\n"), 0o644)
	if p := plain.Check(); len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), "control/scan") {
		t.Errorf("check with a bad control/scan: %q", p)
	}
}

// TestCheckNamesEveryBadNumber: a control file the programs read as a
// number that holds something else is named by check, each on its own.
func TestCheckNamesEveryBadNumber(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, Flavour: "runit", BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"concurrencyqmtp", "greylistdelay", "scantimeout", "databytes"} {
		os.WriteFile(in.Path("control", f), []byte("ten\n"), 0o644)
	}
	got := strings.Join(in.Check(), "\n")
	for _, f := range []string{"concurrencyqmtp", "greylistdelay", "scantimeout", "databytes"} {
		if !strings.Contains(got, "control/"+f+`: "ten" is not a number`) {
			t.Errorf("check does not name control/%s:\n%s", f, got)
		}
	}
}

// TestCheckNamesBadIPMe: control/moreipme and control/notipme hold
// addresses; gw-send refuses to start on anything else, so check says so.
func TestCheckNamesBadIPMe(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, Flavour: "runit", BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(in.Path("control", "moreipme"), []byte("192.0.2.1\nmx.example\n"), 0o644)
	os.WriteFile(in.Path("control", "notipme"), []byte("2001:db8::1\n"), 0o644)
	got := strings.Join(in.Check(), "\n")
	if !strings.Contains(got, `control/moreipme: line 2: "mx.example" is not an IP address`) || strings.Contains(got, "notipme") {
		t.Errorf("check says:\n%s", got)
	}
}

// TestNumericControlsCoverWhatProgramsRead keeps the registry's numbers in step
// with the loaders: every control file a package reads with Int is in it.
func TestNumericControlsCoverWhatProgramsRead(t *testing.T) {
	listed := map[string]bool{}
	for _, f := range numericControls() {
		listed[f] = true
	}
	for _, pkg := range []string{"../smtpd", "../qmtp", "../send", "../scan", "../greylist", "../callout", "../authcheck"} {
		files, _ := filepath.Glob(pkg + "/*.go")
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src := read(t, f)
			for _, m := range intControl.FindAllStringSubmatch(src, -1) {
				if name := m[1] + m[2]; !listed[name] {
					t.Errorf("%s reads control/%s as a number; numericControls lacks it", f, name)
				}
			}
		}
	}
}

// intControl finds `.Int("name", default)` calls and the loaders' table
// rows `{"name", default, ..., &field}`.
var intControl = regexp.MustCompile(`\.Int\("([a-z]+)"|\{"([a-z]+)", [^&{}\n]+&[A-Za-z.]+\}`)

// TestSetScanOnAnExistingInstance: scanning is switched on and off for an
// instance made without it, and a face that is no SMTP listener is
// refused.
func TestSetScanOnAnExistingInstance(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd", "gw-qmtpd", "gw-scan"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, QMTP: []string{"127.0.0.1:2626"}, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	qq := in.Path("service", "smtpd", "env", "QMAILQUEUE")
	if err := in.SetScan(nil, false); err != nil {
		t.Fatal(err)
	}
	if env := read(t, qq); env != bin+"/gw-scan\n" {
		t.Errorf("after scan on: env/QMAILQUEUE = %q", env)
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check after scan on: %q", p)
	}
	if err := in.SetScan([]string{"qmtpd"}, false); !errors.Is(err, ErrUsage) {
		t.Errorf("scan of the QMTP face: %v, want a usage error", err)
	}
	if err := in.SetScan(nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(qq); !os.IsNotExist(err) {
		t.Errorf("after scan off, env/QMAILQUEUE is still there: %v", err)
	}
	if _, err := os.Stat(in.Path("control", "scan")); !os.IsNotExist(err) {
		t.Errorf("after scan off, control/scan is still there: %v", err)
	}
}

// TestStateIsEachDaemonsOwn: state/ is root's, and each daemon's
// directory in it its user's alone: the smtpd user keeps its databases in
// state/smtpd/ and cannot swap gw-send's state/send/. quarantine/ (gw-scan)
// is the smtpd user's. Needs root to chown, as CI runs.
func TestStateIsEachDaemonsOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (make test runs as root in CI)")
	}
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, BinDir: bin,
		Users: Users{SMTPD: "nobody", Queue: "daemon"}})
	if err != nil {
		t.Fatal(err)
	}
	nobody, _, _ := lookupIDs("nobody")
	daemon, _, _ := lookupIDs("daemon")
	for d, want := range map[string]struct {
		uid  int
		mode os.FileMode
	}{"state": {0, 0o755}, "state/send": {daemon, 0o750}, "state/smtpd": {nobody, 0o750}, "state/qmtpd": {0, 0o750}, "quarantine": {nobody, 0o750}} {
		fi, err := os.Lstat(in.Path(d))
		if err != nil {
			t.Fatal(err)
		}
		if got := fileUID(fi); got != want.uid || fi.Mode().Perm() != want.mode || !fi.IsDir() {
			t.Errorf("%s/: uid %d mode %v, want a directory of uid %d mode %04o", d, got, fi.Mode(), want.uid, want.mode)
		}
	}
	if p := in.checkState(mustSettings(t, in)); len(p) > 0 {
		t.Errorf("check of the layout just made: %q", p)
	}

	// The older layout: state/ the smtpd user's, a database in it.
	os.Chown(in.Path("state"), nobody, -1)
	os.WriteFile(in.Path("state", "greylist.db"), nil, 0o600)
	p := strings.Join(in.checkState(mustSettings(t, in)), "\n")
	for _, want := range []string{"state/ is owned by uid " + strconv.Itoa(nobody), "state/greylist.db: a database in the older layout's place"} {
		if !strings.Contains(p, want) {
			t.Errorf("check of the older layout: %q, want %q", p, want)
		}
	}
	// A listener that names it keeps it: services moves it into
	// state/smtpd/ and the argument with it; the rates file a gw of the
	// older layout made in state/ moves too.
	os.Remove(in.Path("state", "smtpd", "rates-smtpd.db"))
	os.WriteFile(in.Path("state", "rates-smtpd.db"), []byte("counts"), 0o600)
	ls := mustSettings(t, in).Listeners
	ls[0].Args = []string{"--greylist=state/greylist.db", "--callout-cache=" + in.Path("state", "callout.db")}
	if err := in.SetListeners(ls); err != nil {
		t.Fatal(err)
	}
	if err := in.WriteServices(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(in.Path("state")); fileUID(fi) != 0 {
		t.Errorf("after services, state/ is uid %d's, want root's", fileUID(fi))
	}
	if fi, err := os.Lstat(in.Path("state", "smtpd", "greylist.db")); err != nil || fileUID(fi) != nobody {
		t.Errorf("after services, state/smtpd/greylist.db: %v (uid %d)", err, fileUID(fi))
	}
	if b, err := os.ReadFile(in.Path("state", "smtpd", "rates-smtpd.db")); string(b) != "counts" {
		t.Errorf("after services, state/smtpd/rates-smtpd.db holds %q (%v), want the older state/rates-smtpd.db", b, err)
	}
	got := mustSettings(t, in).Listeners[0].Args
	if want := []string{"--greylist=state/smtpd/greylist.db", "--callout-cache=" + in.Path("state", "smtpd", "callout.db")}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after services, the listener's arguments are %q, want %q", got, want)
	}
	if p := in.checkState(mustSettings(t, in)); len(p) > 0 {
		t.Errorf("check after services: %q", p)
	}

	// What the smtpd user made in gw-send's place is refused, not given
	// to the queue user with its content.
	os.RemoveAll(in.Path("state", "send"))
	os.Mkdir(in.Path("state", "send"), 0o750)
	os.Chown(in.Path("state", "send"), nobody, -1)
	if err := in.WriteServices(); err == nil || !strings.Contains(err.Error(), "state/send is owned by uid "+strconv.Itoa(nobody)+", neither root nor its user daemon") {
		t.Errorf("services over a state/send the smtpd user made: %v", err)
	}
	os.RemoveAll(in.Path("state", "send"))
	os.Symlink(in.Path("state", "smtpd"), in.Path("state", "send"))
	if err := in.WriteServices(); err == nil || !strings.Contains(err.Error(), "state/send is a symbolic link") {
		t.Errorf("services over a link at state/send: %v", err)
	}
}

// TestGiveTreeFollowsNoLink: a link below a tree handed to a daemon's user
// is given away itself, never its target.
func TestGiveTreeFollowsNoLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (make test runs as root in CI)")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "root-file")
	os.WriteFile(target, nil, 0o600)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o750)
	os.Symlink(target, filepath.Join(tree, "sub", "link"))
	os.Symlink(dir, filepath.Join(tree, "dirlink"))
	if err := giveTree(tree, 65534, 65534, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{target, dir} {
		if fi, _ := os.Stat(p); fileUID(fi) != 0 {
			t.Errorf("%s, a link's target, was given to uid %d", p, fileUID(fi))
		}
	}
	if fi, _ := os.Lstat(filepath.Join(tree, "sub", "link")); fileUID(fi) != 65534 {
		t.Errorf("the link itself stayed uid %d's", fileUID(fi))
	}
}

func mustSettings(t *testing.T, in *Instance) *Settings {
	t.Helper()
	s, err := in.Settings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOldACLDatabaseIsRecompiled: a listener's database that this gw
// cannot read (a layout of an older gw) is named by check and compiled
// again by services.
func TestOldACLDatabaseIsRecompiled(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	db := in.Path("acl", "tcp.smtp.db")
	os.WriteFile(db, []byte("not bbolt"), 0o644)
	if p := strings.Join(in.Check(), "\n"); !strings.Contains(p, "not a rules database of this gw") {
		t.Errorf("check of an unreadable database: %q", p)
	}
	if err := in.CompileACL("tcp.smtp", false); err != nil {
		t.Fatal(err)
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check after the recompile: %q", p)
	}
}

// TestScanListener: a scan listener is gw-scan's proxy as a service of
// its own, with no ACL, its arguments passed on, run as the smtpd user.
func TestScanListener(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd", "gw-scan"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:10025"}, BinDir: bin, Flavour: "runit"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.AddListener(Listener{Face: "scanner", Proto: "scan", Addr: "127.0.0.1:10024",
		Args: []string{"--next-hop", "127.0.0.1:10025"}}); err != nil {
		t.Fatal(err)
	}
	run := read(t, in.Path("service", "scanner", "run"))
	want := bin + "/gw-scan --control-dir " + in.Control() + " --quarantine " + in.Path("quarantine") +
		" proxy --listen 127.0.0.1:10024 --next-hop 127.0.0.1:10025"
	if !strings.Contains(run, want) {
		t.Errorf("scanner/run:\n%s\nwant %q", run, want)
	}
	ls, err := in.Listeners()
	if err != nil || len(ls) != 2 || ls[1].ACL != noACL || ls[1].HasACL() {
		t.Errorf("listeners read back: %+v, %v", ls, err)
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check: %q", p)
	}
	if err := in.AddListener(Listener{Face: "bad", Proto: "scan", Addr: "127.0.0.1:10026", ACL: "tcp.smtp"}); !errors.Is(err, ErrUsage) {
		t.Errorf("a scan listener with an ACL: %v, want a usage error", err)
	}
}

// TestCheckNamesFilesOfAnotherOwner: a journal file left by a tool run as
// root is named, since gw-send stops on it.
func TestCheckNamesFilesOfAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root")
	}
	dir := t.TempDir()
	for _, d := range []string{"journal", "seg"} {
		os.Mkdir(filepath.Join(dir, d), 0o750)
	}
	os.WriteFile(filepath.Join(dir, "journal", "0000000000000002"), []byte("x"), 0o640)
	os.WriteFile(filepath.Join(dir, "seg", "669a1b2c3d400"), []byte("x"), 0o640)
	if err := os.Chown(filepath.Join(dir, "seg", "669a1b2c3d400"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	line := foreignFiles(dir, "nobody", 65534)
	for _, want := range []string{"3 files not owned by the queue user nobody", "journal (uid 0)", "journal/0000000000000002 (uid 0)", "chown -R nobody"} {
		if !strings.Contains(line, want) {
			t.Errorf("check says %q, lacking %q", line, want)
		}
	}
	if strings.Contains(line, "seg/669a1b2c3d400") {
		t.Errorf("check names a file the queue user owns: %q", line)
	}
	os.Chown(filepath.Join(dir, "journal"), 65534, 65534)
	os.Chown(filepath.Join(dir, "seg"), 65534, 65534)
	os.Chown(filepath.Join(dir, "journal", "0000000000000002"), 65534, 65534)
	if line := foreignFiles(dir, "nobody", 65534); line != "" {
		t.Errorf("all files the queue user's, check says %q", line)
	}
}

// TestAccessOfTheQueueAndTheSocket: create closes queue/ to all but its
// owner, puts gw-queued's socket in inject/ outside it, and services
// closes a queue/ that was opened again (an instance of an older layout).
func TestAccessOfTheQueueAndTheSocket(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode(in.Queue()); m != 0o700 {
		t.Errorf("queue/ mode %04o, want 0700", m)
	}
	if filepath.Dir(in.InjectSocket()) != in.Path("inject") {
		t.Errorf("socket %s is not in inject/", in.InjectSocket())
	}
	if run := read(t, in.Path("service", "queued", "run")); !strings.Contains(run, "--socket "+in.InjectSocket()) {
		t.Errorf("queued/run does not put the socket in inject/:\n%s", run)
	}
	os.Chmod(in.Queue(), 0o750)
	if err := in.WriteServices(); err != nil {
		t.Fatal(err)
	}
	if m := mode(in.Queue()); m != 0o700 {
		t.Errorf("after services, queue/ mode %04o, want 0700", m)
	}
}

// TestCheckNamesOpenKeys: a private key any local user may read or write
// is named by check.
func TestCheckNamesOpenKeys(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "main", Options{Me: "gw.test", BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	key := in.Path("control", "dkim", "gw.test", "s1.key")
	os.MkdirAll(filepath.Dir(key), 0o750)
	os.WriteFile(key, []byte("key"), 0o644)
	p := strings.Join(in.Check(), "\n")
	if !strings.Contains(p, "control/dkim/gw.test/s1.key, a private key, is readable by every local user (mode 0644)") {
		t.Errorf("check of a 0644 DKIM key: %q", p)
	}
	os.Chmod(key, 0o666)
	if p := strings.Join(in.Check(), "\n"); !strings.Contains(p, "control/dkim/gw.test/s1.key is writable by group or others (mode 0666)") {
		t.Errorf("check of a 0666 DKIM key: %q", p)
	}
	os.Chmod(key, 0o640)
	if p := strings.Join(in.Check(), "\n"); strings.Contains(p, "s1.key") {
		t.Errorf("check of a 0640 DKIM key: %q", p)
	}
}

// TestDMARCReportService: an SMTP listener that records DMARC results
// gets the instance a service mailing the reports once a day, as the
// smtpd user through gw-queued; none without, and it goes when the
// listener stops recording.
func TestDMARCReportService(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd", "gw-dmarc"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, BinDir: bin, Flavour: "runit"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(in.Path("service", DMARCDaemon)); err == nil {
		t.Fatal("a report service without a listener that records")
	}
	face := Listener{Face: "smtpd", Proto: "smtp", Addr: "127.0.0.1:2525", ACL: "tcp.smtp", Args: []string{"--dmarc-reports", "state/dmarc.db"}}
	if err := in.AddListener(face); err != nil {
		t.Fatal(err)
	}
	run := read(t, in.Path("service", DMARCDaemon, "run"))
	want := bin + "/gw-dmarc --control-dir " + in.Control() + " --db state/dmarc.db report --every 24h"
	if !strings.Contains(run, want) || !strings.Contains(run, "cd "+in.Dir()) {
		t.Errorf("dmarc/run:\n%s\nwant %q", run, want)
	}
	if env := read(t, in.Path("service", DMARCDaemon, "env", "GW_QUEUED")); env != in.InjectSocket()+"\n" {
		t.Errorf("dmarc/env/GW_QUEUED = %q", env)
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check: %q", p)
	}
	// A second face recording into the same file shares the service; one
	// recording elsewhere gets its own.
	in.AddListener(Listener{Face: "submission", Proto: "smtp", Addr: "127.0.0.1:2587", ACL: "tcp.smtp", Args: []string{"--dmarc-reports=state/dmarc.db"}})
	in.AddListener(Listener{Face: "backup", Proto: "smtp", Addr: "127.0.0.1:2526", ACL: "tcp.smtp", Args: []string{"-dmarc-reports", "state/backup.db"}})
	s, _ := in.Settings()
	var names []string
	for _, d := range in.Daemons(s) {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, " "); got != "queued send smtpd submission backup dmarc dmarc-backup" {
		t.Errorf("daemons: %s", got)
	}
	// Recording stops: the services go with it.
	for _, f := range []string{"smtpd", "submission", "backup"} {
		if err := in.RemoveListener(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.AddListener(Listener{Face: "smtpd", Proto: "smtp", Addr: "127.0.0.1:2525", ACL: "tcp.smtp"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{DMARCDaemon, DMARCDaemon + "-backup"} {
		if _, err := os.Stat(in.Path("service", n)); err == nil {
			t.Errorf("service/%s left after the listeners stopped recording", n)
		}
	}
	if err := in.AddListener(Listener{Face: DMARCDaemon, Proto: "smtp", Addr: "127.0.0.1:2588", ACL: "tcp.smtp"}); !errors.Is(err, ErrUsage) {
		t.Errorf("a face named %s: %v, want a usage error", DMARCDaemon, err)
	}
}

// TestListenersKeepRatesInState: each listener's run script names a
// rates file of its own in state/, made by create, owned by the user the
// listener runs as and private to it; a listener whose own arguments
// give --rates keeps them. A run script of an older gw, without --rates,
// is named by check, and services writes it anew.
func TestListenersKeepRatesInState(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (make test runs as root in CI)")
	}
	root, bin := t.TempDir(), t.TempDir()
	for _, p := range []string{"gw-queued", "gw-send", "gw-smtpd", "gw-qmtpd"} {
		os.WriteFile(bin+"/"+p, nil, 0o755)
	}
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, QMTP: []string{"127.0.0.1:2209"},
		BinDir: bin, Users: Users{SMTPD: "nobody", QMTPD: "daemon"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range mustSettings(t, in).Listeners {
		face, user := l.Face, map[string]string{"smtpd": "nobody", "qmtpd": "daemon"}[l.Face]
		file := in.RatesFile(l)
		if want := filepath.Join(in.Dir(), "state", face, "rates-"+face+".db"); file != want {
			t.Fatalf("RatesFile(%s) = %s, want %s", face, file, want)
		}
		if run := read(t, in.Path("service", face, "run")); !strings.Contains(run, " --rates "+file+" ") && !strings.HasSuffix(run, " --rates "+file+"\n") {
			t.Errorf("%s/run gives no --rates %s:\n%s", face, file, run)
		}
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		uid, _, _ := lookupIDs(user)
		if got := int(fi.Sys().(*syscall.Stat_t).Uid); got != uid || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: uid %d mode %04o, want %s's (%d), 0600", file, got, fi.Mode().Perm(), user, uid)
		}
	}
	if fi, _ := os.Stat(in.Path("state")); fi.Mode().Perm() != 0o755 || fileUID(fi) != 0 {
		t.Errorf("state/ uid %d mode %04o, want root's, 0755: each listener's user passes through it to its own directory", fileUID(fi), fi.Mode().Perm())
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check of a fresh instance: %q", p)
	}

	// A run script as an older gw wrote it.
	run := in.Path("service", "smtpd", "run")
	old := regexp.MustCompile(` --rates \S+`).ReplaceAllString(read(t, run), "")
	if err := os.WriteFile(run, []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	p := in.Check()
	if len(p) != 1 || !strings.Contains(p[0], "service smtpd: run gives no --rates: rate counts and bans are kept in memory and lost at each restart") {
		t.Errorf("check of an old run script: %q", p)
	}
	if err := in.WriteServices(); err != nil {
		t.Fatal(err)
	}
	if p := in.Check(); len(p) > 0 {
		t.Errorf("check after services: %q", p)
	}

	// The admin's own --rates stands, and no file is made for it.
	if err := in.AddListener(Listener{Face: "submission", Proto: "smtp", Addr: "127.0.0.1:2587",
		Args: []string{"--rates=/var/lib/shared-rates.db"}}); err != nil {
		t.Fatal(err)
	}
	if run := read(t, in.Path("service", "submission", "run")); strings.Count(run, " --rates") != 1 {
		t.Errorf("submission/run:\n%s\nwant only the listener's own --rates", run)
	}
	sub := Listener{Face: "submission", Proto: "smtp"}
	if _, err := os.Stat(in.RatesFile(sub)); err == nil {
		t.Errorf("%s made for a listener with its own --rates", in.RatesFile(sub))
	}
}

// TestRatesFileIsNotALink: the smtpd user owns state/smtpd/ and puts a
// link at a listener's rates file to a file of root's; gw-instance services, as
// root, refuses the link and leaves the file behind it as it was, its
// owner and mode too.
func TestRatesFileIsNotALink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (make test runs as root in CI)")
	}
	root, bin := t.TempDir(), t.TempDir()
	in, err := Create(root, "main", Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525"}, BinDir: bin,
		Users: Users{SMTPD: "nobody"}})
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rates := in.RatesFile(mustSettings(t, in).Listeners[0])
	os.Remove(rates)
	if err := os.Symlink(victim, rates); err != nil {
		t.Fatal(err)
	}
	if err := in.WriteServices(); err == nil {
		t.Error("services went through a link at the rates file")
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 || fi.Mode().Perm() != 0o640 {
		t.Errorf("the file behind the link: uid %d mode %04o, want root's, 0640", uid, fi.Mode().Perm())
	}
}
