package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gw/lib/runtimetune"
)

// TestDaemonsRuntimeSettings: every long-running daemon of an instance
// (gw-queued, gw-send, the SMTP and QMTP listeners, gw-scan proxy) has
// started itself again with the runtime's monitor kept from its deep
// sleep (lib/runtimetune), and serves; an instance whose
// control/environment sets GOMAXPROCS and GODEBUG's schedtrace runs its
// daemons with them as the sysadmin wrote them.
func TestDaemonsRuntimeSettings(t *testing.T) {
	root := workDir(t)
	for _, c := range []struct {
		name string
		env  []string          // gw-instance create --env
		want map[string]string // each daemon's environment has these
	}{
		{"tuned", nil, map[string]string{"GODEBUG": runtimetune.Setting}},
		{"own", []string{"GOMAXPROCS=2", "GODEBUG=schedtrace=0"}, map[string]string{"GOMAXPROCS": "2", "GODEBUG": "schedtrace=0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			smtp, qmtp, scan := freeAddr(t), freeAddr(t), freeAddr(t)
			// $ gw-instance create NAME --smtp SMTP --qmtp QMTP --env ...
			args := []string{"create", c.name, "--me", "gw.test", "--smtp", smtp, "--qmtp", qmtp, "--bin-dir", binDir}
			for _, kv := range c.env {
				args = append(args, "--env", kv)
			}
			if _, errs, code := gwInstanceRun(t, root, args...); code != 0 {
				t.Fatalf("create: %s", errs)
			}
			// $ gw-instance listen NAME scan scan SCAN -- --next-hop SMTP
			if _, errs, code := gwInstanceRun(t, root, "listen", c.name, "scan", "scan", scan, "--", "--next-hop", smtp); code != 0 {
				t.Fatalf("listen scan: %s", errs)
			}

			// $ gw-instance run NAME
			run := exec.Command(bin("gw-instance"), "--root", root, "run", c.name)
			var out strings.Builder
			run.Stdout, run.Stderr = &lockedWriter{w: &out}, &lockedWriter{w: &out}
			startListening(t, run, smtp)
			defer func() { run.Process.Signal(syscall.SIGTERM); run.Wait() }()
			waitListening(t, qmtp)
			waitListening(t, scan)

			pids := daemonPIDs(t, &out, "queued", "send", "smtpd", "qmtpd", "scan")
			for name, pid := range pids {
				for k, v := range c.want {
					if got := waitEnviron(pid, k, v); got != v {
						t.Errorf("service %s (pid %d) runs with %s=%q, want %q\n%s", name, pid, k, got, v, tail(out.String(), 20))
					}
				}
			}

			// $ swaks --server SCAN ...: through the proxy, the listener
			// and gw-queued, all started again or as they were
			tr := swaks(t, scan, "--from", "a@example.org", "--to", "b@gw.test")
			if r := replyTo(tr, "."); !strings.HasPrefix(r, "250 ") {
				t.Errorf("the message through the proxy was answered %q\n%s\n%s", r, tr, tail(out.String(), 20))
			}
		})
	}
}

// startService matches gw-instance run's line for a daemon it started.
var startService = regexp.MustCompile(`start service=(\S+) pid=(\d+)`)

// daemonPIDs waits for run's output to name the pid of each service.
func daemonPIDs(t *testing.T, out fmt.Stringer, names ...string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, m := range startService.FindAllStringSubmatch(out.String(), -1) {
			var pid int
			fmt.Sscan(m[2], &pid)
			pids[m[1]] = pid
		}
		missing := ""
		for _, n := range names {
			if pids[n] == 0 {
				missing += " " + n
			}
		}
		if missing == "" {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw-instance run started no%s:\n%s", missing, out.String())
		}
	}
}

// waitEnviron returns the value of key in process pid's environment
// once it is want, or what it is after 30 s: a daemon that starts
// itself again has the environment of its first start until it does.
func waitEnviron(pid int, key, want string) string {
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		got = ""
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, key+"="); ok {
				got = v
				break
			}
		}
		if got == want {
			break
		}
	}
	return got
}

// waitListening waits until something accepts connections on addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}
