package tests

// The inside of the house, tried as a local attacker with a foothold
// would: a listener's threads that kept root's groups, a listener's user
// reading the queue, any local user stalling the rules lookups with a
// lock, and configuration anyone may write.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gw/lib/privilege"
)

// The users of INSTALL step 3 under the tests' own names: the queue user
// with a group of its own, the listeners in their group; gwtqold is a
// queue user of the old layout, in the listeners' group.
const (
	listenersGroup = "gwtl"
	trustQueueUser = "gwtq"
	smtpdUser      = "gwtsmtpd"
	qmtpdUser      = "gwtqmtpd"
	oldQueueUser   = "gwtqold"
)

// trustUsers makes the users once (useradd is idempotent here: a user
// that exists is kept). The tests run as root, as the daemons start.
func trustUsers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests start daemons as root, which then drop to users: run them as root")
	}
	if _, err := user.LookupGroup(listenersGroup); err != nil {
		mustRun(t, "groupadd", "-r", listenersGroup)
	}
	for _, u := range [][]string{
		{trustQueueUser, "-U"},
		{smtpdUser, "-g", listenersGroup},
		{qmtpdUser, "-g", listenersGroup},
		{oldQueueUser, "-g", listenersGroup},
	} {
		if _, err := user.Lookup(u[0]); err == nil {
			continue
		}
		mustRun(t, "useradd", append([]string{"-r", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"}, append(u[1:], u[0])...)...)
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ids returns a user's uid and primary gid.
func ids(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// as runs argv as the named user with that user's group only, the way an
// attacker who took over that daemon would, and returns its output.
func as(t *testing.T, name string, argv ...string) (string, error) {
	t.Helper()
	uid, gid := ids(t, name)
	cmd := exec.Command(need(t, "setpriv"), append([]string{"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid),
		"--clear-groups", "--"}, argv...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// trustInstance is an instance made by gw-instance create with the users
// of INSTALL, run by gw-instance run.
type trustInstance struct {
	root, dir, smtp, qmtp, log string
	run                        *exec.Cmd
}

func newTrustInstance(t *testing.T, queue string) *trustInstance {
	t.Helper()
	trustUsers(t)
	root := workDir(t)
	in := &trustInstance{root: root, dir: filepath.Join(root, "gw"), smtp: freeAddr(t), qmtp: freeAddr(t),
		log: filepath.Join(root, "run.log")}
	// The smarthost is a closed loopback port: mail stays queued.
	mustRun(t, bin("gw-instance"), "--root", root, "create", "gw", "--smtp", in.smtp, "--qmtp", in.qmtp,
		"--me", "gw.test", "--rcpthosts", "gw.test", "--smarthost", freeAddr(t),
		"--user", "queue:"+queue, "--user", "smtpd:"+smtpdUser, "--user", "qmtpd:"+qmtpdUser, "--bin-dir", binDir)
	return in
}

// start runs the instance from a root shell that is in supplementary
// groups 0 and 42, as a root login often is, and waits for the listeners.
func (in *trustInstance) start(t *testing.T) {
	t.Helper()
	logf, err := os.Create(in.log)
	if err != nil {
		t.Fatal(err)
	}
	in.run = exec.Command(need(t, "setpriv"), "--groups", "0,42", "--", bin("gw-instance"), "--root", in.root, "run", "gw")
	in.run.Stdout, in.run.Stderr = logf, logf
	if err := in.run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.run.Process.Signal(syscall.SIGTERM)
		in.run.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(in.log)
			t.Logf("gw-instance run:\n%s", b)
		}
	})
	waitFor(t, "the instance's listeners", 20*time.Second, func() bool { return listening(in.smtp) && listening(in.qmtp) })
}

func listening(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// daemons returns the pid of each daemon gw-instance run started, by name.
func (in *trustInstance) daemons(t *testing.T) map[string]int {
	t.Helper()
	pid := in.run.Process.Pid // setpriv execs gw-instance: same pid
	// Each thread lists the children it forked.
	files, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	var kids []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	out := map[string]int{}
	for _, f := range kids {
		comm, err := os.ReadFile(filepath.Join("/proc", f, "comm"))
		if err != nil {
			continue
		}
		out[strings.TrimSpace(string(comm))], _ = strconv.Atoi(f)
	}
	return out
}

// Finding 4: root's supplementary groups must be gone from every thread
// of every daemon, not only from the thread that called setgroups.
func TestPrivilegeDropHoldsOnEveryThread(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	in.start(t)
	// A session, so that the listener's threads have served a client.
	if r := smtpdDialogue(t, in.smtp, "EHLO client.example\r\nQUIT\r\n"); len(r) != 3 || !strings.HasPrefix(r[2], "221") {
		t.Fatalf("a session with gw-smtpd: %q", r)
	}
	// A listener is reachable from bind(), before it drops: each daemon
	// gets up to 10 s to be seen with every thread dropped.
	var bad []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		bad = in.undropped(t)
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// Finding 5: a listener's user, which may hand messages to gw-queued's
// socket, cannot read what is queued.
func TestListenersCannotReadTheQueue(t *testing.T) {
	in := newTrustInstance(t, trustQueueUser)
	in.start(t)
	const secret = "the-board-minutes-7f3a"
	if r := sendMessage(t, in.smtp, "a@gw.test", []string{"postmaster@gw.test"}, plainMessage("minutes", secret)); !strings.HasPrefix(r, "250") {
		t.Fatalf("a listener could not hand over a message: %q", r)
	}
	queue := filepath.Join(in.dir, "queue")
	if out := mustRun(t, "grep", "-rl", secret, queue); !strings.Contains(out, "/seg/") {
		t.Fatalf("the message is not in the queue's segments: %q", out)
	}
	for _, listener := range []string{smtpdUser, qmtpdUser} {
		// What an attacker inside gw-smtpd or gw-qmtpd tries first.
		out, err := as(t, listener, "sh", "-c", "ls -la "+queue+"; grep -r "+secret+" "+queue+"; cat "+queue+"/seg/*")
		if err == nil || strings.Contains(out, secret) || !strings.Contains(out, "Permission denied") {
			t.Errorf("as %s, reading the queue: %v\n%s", listener, err, out)
		}
	}
	if out, err := exec.Command(bin("gw-instance"), "--root", in.root, "check", "gw").CombinedOutput(); err != nil {
		t.Errorf("gw-instance check on the layout of INSTALL: %v\n%s", err, out)
	}
}

// Finding 5, an instance of the old layout (the queue user in the
// listeners' group): gw-instance check names it, and queue/ is still
// closed to the listeners.
func TestOldLayoutQueueGroupIsNamed(t *testing.T) {
	in := newTrustInstance(t, oldQueueUser)
	queue := filepath.Join(in.dir, "queue")
	if out, err := as(t, smtpdUser, "cat", filepath.Join(queue, "format")); err == nil {
		t.Errorf("as %s, the queue's format file was read: %q", smtpdUser, out)
	}
	out, err := exec.Command(bin("gw-instance"), "--root", in.root, "check", "gw").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "queue user "+oldQueueUser+" has the listeners' group") {
		t.Errorf("gw-instance check, queue user in the listeners' group: %v\n%s", err, out)
	}
	// An upgraded queue that was 0750: services closes it again, check
	// named it meanwhile.
	os.Chmod(queue, 0o750)
	out, _ = exec.Command(bin("gw-instance"), "--root", in.root, "check", "gw").CombinedOutput()
	if !strings.Contains(string(out), "queue/ is open to the listeners' group") {
		t.Errorf("gw-instance check, queue/ 0750 in the listeners' group:\n%s", out)
	}
	mustRun(t, bin("gw-instance"), "--root", in.root, "services", "gw")
	if fi, err := os.Stat(queue); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("after gw-instance services, queue/ is %v (%v), want mode 0700", fi.Mode(), err)
	}
}

// Finding 6: a lock on the rules database neither works for a local user
// nor, taken by someone who may read the rules, stalls the clients.
func TestRulesLockDoesNotStallClients(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	db := filepath.Join(in.dir, "tcp.smtp.db")
	compile := func() {
		t.Helper()
		c := exec.Command(bin("gw-tcprules"), db, db+".tmp")
		c.Stdin = strings.NewReader("127.0.0.1:allow\n:deny\n")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("gw-tcprules: %v\n%s", err, out)
		}
	}
	compile()
	addr := in.standalone(t, nil, "--acl", db)
	compile() // new rules: the next client's lookup opens the new file

	// Any local user: the database is not theirs to open.
	if out, err := as(t, "nobody", "flock", "-n", "-x", db, "true"); err == nil {
		t.Errorf("nobody took an exclusive lock on the rules database: %s", out)
	}
	if fi, _ := os.Stat(db); fi.Mode().Perm() != 0o640 {
		t.Errorf("rules database mode %04o, want 0640", fi.Mode().Perm())
	}
	// Someone who may read it (root here) holds the lock: each client is
	// told to come back at once, none waits behind another.
	// flock(1) runs sleep as its child, which holds the lock too: the
	// holder is a process group, stopped as one.
	holder := exec.Command(need(t, "flock"), "-x", db, "sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	release := func() { syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); holder.Wait() }
	defer release()
	time.Sleep(200 * time.Millisecond)
	for i := range 3 {
		start := time.Now()
		greeting := firstLine(t, addr)
		if took := time.Since(start); took > 2*time.Second || !strings.HasPrefix(greeting, "421") {
			t.Errorf("client %d under the lock: %q after %v, want 421 at once", i+1, greeting, took.Round(time.Millisecond))
		}
	}
	if b, _ := os.ReadFile(in.log); !strings.Contains(string(b), "locked by another process") {
		t.Errorf("the lock is not logged:\n%s", b)
	}
	release()
	// sleep, killed with flock, lets go of the lock when it is gone.
	waitFor(t, "the lock's release", 5*time.Second, func() bool {
		return exec.Command("flock", "-n", "-s", db, "true").Run() == nil
	})
	if greeting := firstLine(t, addr); !strings.HasPrefix(greeting, "220") {
		t.Errorf("once the lock is gone: %q, want 220", greeting)
	}
}

// firstLine connects to addr and returns the server's first line.
func firstLine(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	b := make([]byte, 512)
	n, _ := c.Read(b)
	line, _, _ := strings.Cut(string(b[:n]), "\r\n")
	return line
}

// Finding 8: a daemon whose configuration or queue anyone else could
// have written refuses to start, with one line that names the path.
func TestDaemonsRefuseWritableConfiguration(t *testing.T) {
	dir := workDir(t)
	control, acl, queue := filepath.Join(dir, "control"), filepath.Join(dir, "acl"), filepath.Join(dir, "queue")
	os.MkdirAll(control, 0o755)
	os.MkdirAll(acl, 0o755)
	os.WriteFile(filepath.Join(control, "me"), []byte("gw.test\n"), 0o644)
	os.WriteFile(filepath.Join(control, "rcpthosts"), []byte("gw.test\n"), 0o644)
	db := filepath.Join(acl, "tcp.smtp.db")
	c := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	c.Stdin = strings.NewReader(":allow\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	mustRun(t, bin("gw-queue"), "--init", queue)

	smtpd := func() []string {
		return []string{bin("gw-smtpd"), "--control-dir", control, "--acl", db, "--listen", freeAddr(t)}
	}
	qmtpd := []string{bin("gw-qmtpd"), "--control-dir", control, "--listen", "127.0.0.1:0"}
	queued := []string{bin("gw-queued"), "--queue", queue, "--socket", filepath.Join(dir, "inject.sock")}
	send := []string{bin("gw-send"), "--queue", queue, "--control-dir", control}
	nobody, _ := ids(t, "nobody")
	for _, tc := range []struct {
		attack string
		path   string
		change func(string) error
		argv   []string
		want   string
	}{
		{"control/ open to all", control, chmod(0o777), smtpd(), "writable by group and others (mode 0777)"},
		{"a control file open to all", filepath.Join(control, "rcpthosts"), chmod(0o666), smtpd(), "writable by group and others (mode 0666)"},
		{"a control file given to nobody", filepath.Join(control, "rcpthosts"), chown(nobody), smtpd(), "owned by uid " + strconv.Itoa(nobody)},
		{"the rules database open to all", db, chmod(0o666), smtpd(), "writable by group and others (mode 0666)"},
		{"acl/ writable by its group", acl, chmod(0o775), smtpd(), "writable by its group (mode 0775)"},
		{"control/ open to all, QMTP", control, chmod(0o777), qmtpd, "writable by group and others (mode 0777)"},
		{"queue/ open to all", queue, chmod(0o777), queued, "writable by group and others (mode 0777)"},
		{"queue/seg open to all", filepath.Join(queue, "seg"), chmod(0o777), queued, "writable by group and others (mode 0777)"},
		{"queue/ open to all, runner", queue, chmod(0o777), send, "writable by group and others (mode 0777)"},
		{"the socket's directory writable by its group", dir, chmod(0o770), queued, "refusing socket directory " + dir + ": writable by its group (mode 0770)"},
		{"control/ writable by its group, runner", control, chmod(0o770), send, "writable by its group (mode 0770)"},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.change(tc.path); err != nil {
			t.Fatal(err)
		}
		code, stderr := runBriefly(t, tc.argv)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 111 || len(lines) != 1 || !strings.Contains(lines[0], tc.path+":") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%s: %s exit %d, stderr %q; want 111 and one line naming %s: %s", tc.attack, filepath.Base(tc.argv[0]), code, stderr, tc.path, tc.want)
		}
		os.Chmod(tc.path, fi.Mode().Perm())
		os.Chown(tc.path, 0, 0)
	}
	// Put back as INSTALL sets it, the listener starts and serves.
	argv := smtpd()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addr := argv[len(argv)-1]
	waitFor(t, "gw-smtpd on "+addr, 10*time.Second, func() bool { return listening(addr) })
	if g := firstLine(t, addr); !strings.HasPrefix(g, "220") {
		t.Errorf("gw-smtpd on its restored configuration: %q", g)
	}
}

func chmod(m os.FileMode) func(string) error {
	return func(p string) error { return os.Chmod(p, m) }
}

func chown(uid int) func(string) error {
	return func(p string) error { return os.Chown(p, uid, -1) }
}

// runBriefly runs argv for at most 5 s and returns its exit code (-1 if
// it was still running: it started) and its standard error.
func runBriefly(t *testing.T, argv []string) (int, string) {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), stderr.String()
	case <-time.After(5 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return -1, stderr.String()
	}
}

// undropped lists the threads of the instance's daemons that do not run
// as the user each is meant to.
func (in *trustInstance) undropped(t *testing.T) (bad []string) {
	t.Helper()
	ds := in.daemons(t)
	for name, runAs := range map[string]string{"gw-smtpd": smtpdUser, "gw-qmtpd": qmtpdUser, "gw-queued": trustQueueUser, "gw-send": trustQueueUser} {
		pid, ok := ds[name]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not running (daemons %v)", name, ds))
			continue
		}
		uid, gid := ids(t, runAs)
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
		if name == "gw-smtpd" && len(tasks) < 2 {
			bad = append(bad, fmt.Sprintf("gw-smtpd has %d thread: nothing to compare", len(tasks)))
		}
		for _, path := range tasks {
			st, err := privilege.ReadStatus(path)
			if err != nil {
				continue // a thread that ended since the glob
			}
			if d := st.Differs(uid, gid); d != "" {
				bad = append(bad, fmt.Sprintf("%s (pid %d) thread %s, meant to run as %s: %s", name, pid, filepath.Base(filepath.Dir(path)), runAs, d))
			}
		}
	}
	return bad
}
