package tests

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// makeRun is scripts/run.sh (make run) started by a test, its banner and
// logs gathered as they come.
type makeRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	err  error
}

func startMakeRun(t *testing.T, root string, env ...string) *makeRun {
	t.Helper()
	r := &makeRun{done: make(chan struct{})}
	r.cmd = exec.Command("sh", "../scripts/run.sh")
	r.cmd.Env = append(os.Environ(), append([]string{"GW_RUN_ROOT=" + root, "GW_RUN_BIN=" + binDir}, env...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
		r.err = r.cmd.Wait()
		pr.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("make run said:\n%s", r.output())
		}
	})
	return r
}

func (r *makeRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// waitFor waits until the output matches re, or the run ends.
func (r *makeRun) waitFor(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(r.output()); m != nil {
			return m
		}
		select {
		case <-r.done:
			if m := rx.FindStringSubmatch(r.output()); m != nil {
				return m
			}
			t.Fatalf("make run ended (%v) before saying %q:\n%s", r.err, re, r.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("make run did not say %q:\n%s", re, r.output())
	return nil
}

func (r *makeRun) stop() {
	if r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// bannerCommand returns the banner's command line holding all of parts.
func bannerCommand(t *testing.T, banner string, parts ...string) string {
	t.Helper()
	for _, l := range strings.Split(banner, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return strings.TrimSpace(strings.SplitN(l, "#", 2)[0])
		}
	}
	t.Fatalf("the banner has no command with %q:\n%s", parts, banner)
	return ""
}

// shell runs a banner command as the admin would paste it.
func shell(t *testing.T, command string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", command).CombinedOutput()
	if err != nil {
		t.Fatalf("$ %s\n%s\n%v", command, out, err)
	}
	return string(out)
}

// waitShell runs a banner command until its output matches every one
// of res: what the daemons log reaches their logs a moment after the
// client has its reply.
func waitShell(t *testing.T, command string, res ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("sh", "-c", command).CombinedOutput()
		missing := ""
		for _, re := range res {
			if !regexp.MustCompile(re).Match(out) {
				missing = re
				break
			}
		}
		if missing == "" {
			return string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("$ %s\n%s\n%v\nno line matches %q", command, out, err, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNewAdminWalkThrough is a new admin's first hour, by the banner of
// make run: start it on chosen ports, send a message with the banner's
// swaks line, find it in the queue, show it and trace it through the
// logs, ask where its recipient
// goes, read the settings in effect, test a session from a stranger's
// address (nothing queued); then run again on another port, and
// once more on a port another process holds.
func TestNewAdminWalkThrough(t *testing.T) {
	need(t, "swaks")
	root := workDir(t)
	smtp, sink := freePort(t), freePort(t)

	// $ GW_RUN_SMTP=… GW_RUN_SINK=… make run
	r := startMakeRun(t, root, "GW_RUN_SMTP="+strconv.Itoa(smtp), "GW_RUN_SINK="+strconv.Itoa(sink))
	banner := r.waitFor(t, `(?s)^.*Logs follow`)[0]
	if want := "SMTP listener  127.0.0.1:" + strconv.Itoa(smtp); !strings.Contains(banner, want) {
		t.Errorf("the banner does not say %q", want)
	}
	r.waitFor(t, `smtpd: .*listening`)
	if os.Geteuid() == 0 {
		r.waitFor(t, `gw-instance: warning: running as root and control/users names no user`)
	}

	// $ swaks --server … --to test@example.com
	shell(t, bannerCommand(t, banner, "swaks --server"))
	// $ gw-qstat … list: the message, deferred or waiting (no sink runs).
	list := shell(t, bannerCommand(t, banner, "gw-qstat", " list"))
	m := regexp.MustCompile(`#([0-9a-f]{13}) `).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("gw-qstat list shows no message:\n%s", list)
	}
	// $ gw-qstat … show QID
	show := shell(t, strings.Replace(bannerCommand(t, banner, "gw-qstat", " show QID"), "QID", m[1], 1))
	for _, want := range []string{"id: " + m[1], "sender: <you@example.org>", "recipient: <test@example.com> pending", "*** body ***", "*** end ***"} {
		if !strings.Contains(show, want) {
			t.Errorf("gw-qstat show: no %q in:\n%s", want, show)
		}
	}
	// $ gw-qstat … trace QID: make run keeps the daemons' logs where a
	// supervisor's multilog would, so the message's life is there: its
	// session's RCPT, its acceptance and its queueing, then, once gw-send
	// has tried the sink that does not run, the deferral.
	traceCmd := strings.Replace(bannerCommand(t, banner, "gw-qstat", " trace QID"), "QID", m[1], 1)
	trace := waitShell(t, traceCmd,
		`main/smtpd info rcpt sid=\S+ to=test@example.com result=accept`,
		`main/smtpd info accepted sid=\S+ msg=\S+ qid=`+m[1]+` `,
		`main/queued info queued qid=`+m[1]+` `,
		`main/send info delivery qid=`+m[1]+` rcpt=test@example.com .*result=deferred`)
	t.Logf("$ %s\n%s", traceCmd, trace)
	// $ gw-qctl … --domain example.com retry: the banner names the
	// instance as every other command does.
	if out := shell(t, bannerCommand(t, banner, "gw-qctl", "--instance main", " retry")); !hasLine(out, m[1]+" ok") {
		t.Errorf("gw-qctl retry: no line %q in:\n%s", m[1]+" ok", out)
	}
	// $ gw-send … --explain test@example.com
	explain := shell(t, bannerCommand(t, banner, "gw-send", "--explain"))
	if want := "route: 127.0.0.1 port " + strconv.Itoa(sink) + " over SMTP (smtproutes; no MX lookup)"; !strings.Contains(explain, want) {
		t.Errorf("gw-send --explain: no %q in:\n%s", want, explain)
	}
	// $ gw-instance … config main -n
	config := shell(t, bannerCommand(t, banner, "gw-instance", "config main -n"))
	for _, want := range []string{"me = gw.localhost", "rcpthosts = example.com", "smtproutes = example.com:127.0.0.1:" + strconv.Itoa(sink)} {
		if !hasLine(config, want) {
			t.Errorf("gw-instance config -n: no line %q in:\n%s", want, config)
		}
	}
	// $ printf '…' | gw-smtpd … --test-session --client 192.0.2.7: the
	// running instance's policy for a stranger, each decision explained,
	// and the queue holds the one message it held before.
	session := shell(t, bannerCommand(t, banner, "gw-smtpd", "--test-session"))
	transcript(t, session,
		`>>> acl: `+filepath.Join(root, "main", "acl", "tcp.smtp.db")+`: line 4 decides (key ""): :allow`,
		">>> env: RELAYCLIENT is not set",
		"220 gw.localhost ESMTP",
		"250 ", // HELO
		"250 2.0.0 ok",
		">>> relay: example.com is accepted here",
		"250 2.0.0 ok",
		">>> relay: refused: example.net is not in rcpthosts/morercpthosts and the client may not relay",
		"553 5.7.1 ",
		"221 ")
	again := shell(t, bannerCommand(t, banner, "gw-qstat", " list"))
	if ids := regexp.MustCompile(`#([0-9a-f]{13}) `).FindAllStringSubmatch(again, -1); len(ids) != 1 || ids[0][1] != m[1] {
		t.Errorf("after the session test the queue holds more than #%s:\n%s", m[1], again)
	}
	r.stop()

	// Again, on another port: the instance takes it.
	smtp2 := freePort(t)
	r = startMakeRun(t, root, "GW_RUN_SMTP="+strconv.Itoa(smtp2))
	r.waitFor(t, `SMTP listener  127\.0\.0\.1:`+strconv.Itoa(smtp2)+` `)
	r.waitFor(t, `smtpd: .*listening`)
	r.stop()

	// Again, on a port another process holds: a clear refusal at once,
	// not a listener restarting every second.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := l.Addr().(*net.TCPAddr).Port
	r = startMakeRun(t, filepath.Join(root, "fresh"), "GW_RUN_SMTP="+strconv.Itoa(held))
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("make run on a held port still runs:\n%s", r.output())
	}
	out := r.output()
	if want := "listener smtpd cannot listen on 127.0.0.1:" + strconv.Itoa(held); !strings.Contains(out, want) || !strings.Contains(out, "another process holds it") {
		t.Errorf("make run on a held port does not say %q and why:\n%s", want, out)
	}
	if strings.Contains(out, "info start service=") {
		t.Errorf("make run on a held port started daemons:\n%s", out)
	}
}
