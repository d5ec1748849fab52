// Package scenarios runs the seed scenarios of ARCHITECTURE.md end to end:
// instances made by gw-instance, their service directories run by the real
// runsvdir (runit) or svscan (daemontools), on loopback addresses, with the
// loopback DNS server of lib/dns/dnstest and real receivers (Postfix's
// smtp-sink, gw's own listeners), asserting where every message ends and
// the headers it carries.
//
// The harness is a copy of tests/main_test.go's, kept small: build the
// programs once, fail (never skip) when a peer is missing, keep the working
// directory of a failed test.
package scenarios

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gw/tests/internal/e2e"
)

var binDir string

func TestMain(m *testing.M) {
	e2e.LoopbackDNS()
	dir, err := e2e.Build("gw-scenario-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

func need(t *testing.T, program string) string { t.Helper(); return e2e.Need(t, program) }

func workDir(t *testing.T) string { t.Helper(); return e2e.WorkDir(t, "gw-scenario-") }

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a port free on ip now.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// gwInstance runs gw-instance with --root root; a non-zero exit fails t.
func gwInstance(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin("gw-instance"), append([]string{"--root", root}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("gw-instance %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// write writes control or acl files of an instance: name → text.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// supervisor is a real runsvdir or svscan on a scan directory of its own.
type supervisor struct {
	kind string // runit or daemontools
	scan string
	cmd  *exec.Cmd
}

// startSupervisor starts runsvdir (runit) or svscan (daemontools) on a
// fresh scan directory under dir. At cleanup every service and its logger
// is stopped (sv exit / svc -dx) and the scanner is ended.
func startSupervisor(t *testing.T, kind, dir string) *supervisor {
	t.Helper()
	s := &supervisor{kind: kind, scan: filepath.Join(dir, "scan")}
	if err := os.MkdirAll(s.scan, 0o755); err != nil {
		t.Fatal(err)
	}
	if kind == "runit" {
		s.cmd = exec.Command(need(t, "runsvdir"), "-P", s.scan)
		need(t, "sv")
		need(t, "svlogd")
	} else {
		s.cmd = exec.Command(need(t, "svscan"), s.scan)
		need(t, "svc")
		need(t, "multilog")
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *supervisor) services() []string {
	ents, _ := os.ReadDir(s.scan)
	var dirs []string
	for _, e := range ents {
		dirs = append(dirs, filepath.Join(s.scan, e.Name()))
	}
	sort.Strings(dirs)
	return dirs
}

// control sends a command to one service: sv's word (runit) or svc's
// letter (daemontools), e.g. "restart"/"-t", "alarm"/"-a", "down"/"-d".
func (s *supervisor) control(t *testing.T, service string, arg string) {
	t.Helper()
	dir := filepath.Join(s.scan, service)
	var cmd *exec.Cmd
	if s.kind == "runit" {
		cmd = exec.Command("sv", "-w", "45", arg, dir) // gw-send: --stop-grace 30s
	} else {
		cmd = exec.Command("svc", arg, dir)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s %s: %v\n%s", cmd.Path, arg, dir, err, out)
	}
}

// up waits until every linked service and its logger runs.
func (s *supervisor) up(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d services up under %s", n, s.kind), 20*time.Second, func() bool {
		dirs := s.services()
		if len(dirs) < n {
			return false
		}
		for _, d := range dirs {
			for _, x := range []string{d, filepath.Join(d, "log")} {
				b, err := os.ReadFile(filepath.Join(x, "supervise", "status"))
				if err != nil || len(b) < 18 || b[12]|b[13]|b[14]|b[15] == 0 {
					return false
				}
			}
		}
		return true
	})
	// Up is not ready: the listeners answer 451 until their instance's
	// gw-queued takes connections on its socket (services start in
	// parallel). Clients would retry; the tests wait instead.
	for _, d := range s.services() {
		if !strings.HasSuffix(d, "-queued") {
			continue
		}
		target, err := filepath.EvalSymlinks(d)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(filepath.Dir(filepath.Dir(target)), "inject", "inject.sock")
		waitFor(t, "gw-queued on "+sock, 20*time.Second, func() bool {
			c, err := net.Dial("unix", sock)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

func (s *supervisor) stop(t *testing.T) {
	// Listeners first, then the runners, the injectors last: the order
	// gw-instance run keeps, so that no daemon waits on a peer's
	// connection (gw-queued finishes its clients' messages before it exits).
	// The scanner goes first: runsvdir and svscan exit on SIGTERM and leave
	// the supervisors running, which otherwise they would restart.
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	dirs := s.services()
	rank := func(d string) int {
		switch {
		case strings.HasSuffix(d, "-queued"):
			return 2
		case strings.HasSuffix(d, "-send"):
			return 1
		}
		return 0
	}
	sort.SliceStable(dirs, func(i, j int) bool { return rank(dirs[i]) < rank(dirs[j]) })
	for _, d := range dirs {
		if s.kind == "runit" {
			exec.Command("sv", "-w", "40", "force-stop", d).Run()
			exec.Command("sv", "exit", d, filepath.Join(d, "log")).Run()
		} else {
			exec.Command("svc", "-dx", d, filepath.Join(d, "log")).Run()
		}
	}
	// Wait for the supervise/runsv processes to let go of the directories.
	end := time.Now().Add(45 * time.Second)
	for _, d := range s.services() {
		for _, x := range []string{d, filepath.Join(d, "log")} {
			for time.Now().Before(end) {
				f, err := os.OpenFile(filepath.Join(x, "supervise", "ok"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
				if err != nil {
					break
				}
				f.Close()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if t.Failed() {
		for _, d := range s.services() {
			logs, _ := filepath.Glob(filepath.Join(d, "log", "main", "current"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, tailLines(string(b), 40))
			}
		}
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// logOf returns what a service of the scan directory logged so far.
func (s *supervisor) logOf(service string) string {
	b, _ := os.ReadFile(filepath.Join(s.scan, service, "log", "main", "current"))
	return string(b)
}

// sink is Postfix's smtp-sink on addr, writing each transaction it
// accepts to a file in dir.
type sink struct {
	addr, dir string
	cmd       *exec.Cmd
	mu        sync.Mutex
}

func startSink(t *testing.T, dir, addr string) *sink {
	t.Helper()
	s := &sink{addr: addr, dir: dir}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *sink) start(t *testing.T) {
	t.Helper()
	args := []string{"-R", s.dir, "-d", "%H%M%S.", s.addr, "100"}
	if os.Getuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	s.cmd = exec.Command(need(t, "smtp-sink"), args...)
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "smtp-sink on "+s.addr, 5*time.Second, func() bool { return listening(s.addr) })
}

func (s *sink) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// received is one transaction a sink took: its envelope and message.
type received struct {
	file  string
	from  string
	rcpts []string
	text  string
}

func (r received) header(name string) []string {
	var vals []string
	head, _, _ := strings.Cut(r.text, "\n\n")
	lines := strings.Split(head, "\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(k, name) {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			v += "\n" + lines[i]
		}
		vals = append(vals, strings.TrimSpace(v))
	}
	return vals
}

// messages returns every transaction the sink wrote.
func (s *sink) messages(t *testing.T) []received {
	t.Helper()
	ents, _ := os.ReadDir(s.dir)
	writing := s.writing()
	var out []received
	for _, e := range ents {
		if writing[e.Name()] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue
		}
		b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		r := received{file: e.Name(), text: string(b)}
		for _, a := range r.header("X-Rcpt-Args") {
			r.rcpts = append(r.rcpts, strings.Trim(strings.Fields(a)[0], "<>"))
		}
		if m := r.header("X-Mail-Args"); len(m) > 0 {
			r.from = strings.Trim(strings.Fields(m[0] + " x")[0], "<>")
		}
		out = append(out, r)
	}
	return out
}

// writing returns the dump files smtp-sink still has open: it writes a
// transaction's file as the data arrives and closes it before its 250,
// so an open file is a message not yet complete (reading it gave a
// message cut short, and a flaky test).
func (s *sink) writing() map[string]bool {
	open := map[string]bool{}
	if s.cmd == nil || s.cmd.Process == nil {
		return open
	}
	fds := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	ents, _ := os.ReadDir(fds)
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && filepath.Dir(target) == s.dir {
			open[filepath.Base(target)] = true
		}
	}
	return open
}

// bySubject returns the transactions whose Subject is subject.
func (s *sink) bySubject(t *testing.T, subject string) []received {
	var out []received
	for _, r := range s.messages(t) {
		if sub := r.header("Subject"); len(sub) > 0 && sub[0] == subject {
			out = append(out, r)
		}
	}
	return out
}

// swaks sends one message and returns swaks' transcript and exit code
// (0 sent, 23-29 refused at some step).
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(need(t, "swaks"), append([]string{"--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// mustSend sends with swaks and fails t unless the message is accepted.
func mustSend(t *testing.T, server, from, to, subject string, extra ...string) {
	t.Helper()
	args := append([]string{"--server", server, "--from", from, "--to", to, "--header", "Subject: " + subject}, extra...)
	if out, code := swaks(t, args...); code != 0 {
		t.Fatalf("swaks to %s via %s: exit %d\n%s", to, server, code, out)
	}
}

// mustRefuse sends with swaks and fails t unless the message is refused
// with a reply that contains want.
func mustRefuse(t *testing.T, server, from, to, want string, extra ...string) {
	t.Helper()
	args := append([]string{"--server", server, "--from", from, "--to", to, "--header", "Subject: refused"}, extra...)
	out, code := swaks(t, args...)
	if code == 0 {
		t.Fatalf("swaks to %s via %s: accepted, want refused with %q\n%s", to, server, want, out)
	}
	if !strings.Contains(out, want) {
		t.Fatalf("swaks to %s via %s: exit %d, want a reply with %q\n%s", to, server, code, want, out)
	}
}

// qstat runs gw-qstat on an instance and returns its output.
func qstat(t *testing.T, root, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin("gw-qstat"), append([]string{"--root", root, "--instance", name}, args...)...).Output()
	if err != nil {
		t.Fatalf("gw-qstat %s: %v", name, err)
	}
	return string(out)
}

func queued(t *testing.T, root, name string) int {
	t.Helper()
	var n int
	for _, l := range strings.Split(qstat(t, root, name), "\n") {
		if _, err := fmt.Sscanf(l, "messages in queue: %d", &n); err == nil {
			return n
		}
	}
	t.Fatalf("gw-qstat %s: no message count", name)
	return 0
}

func openFile(path string) (*os.File, error) { return os.Open(path) }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
