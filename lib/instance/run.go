package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Supervision timing of Run, as supervise and runsv do it.
const (
	restartDelay = time.Second      // between a daemon's exit and its restart
	maxDelay     = 30 * time.Second // the longest wait before restarting a daemon that keeps failing at start
	quickExit    = 5 * time.Second  // a daemon that exits sooner failed at start

	socketWait = 10 * time.Second // for gw-queued's socket before the listeners start
	stopWait   = 40 * time.Second // after SIGTERM (gw-send's --stop-grace is 30s) before SIGKILL
)

// Run runs every daemon of the instance in the foreground until ctx ends,
// restarting each one a second after it exits, with each line of its output
// written to out behind the daemon's name and, stamped, to the service's
// log directory (runlog.go). It is the embedded supervisor
// for a first try and for make run; production uses svscan or runsvdir on
// the service directories. The daemons run the commands the run scripts
// exec, minus envdir and setuidgid: Run sets the environment itself and,
// as root, the queue user's credentials.
func (in *Instance) Run(ctx context.Context, out io.Writer) error {
	s, err := in.Settings()
	if err != nil {
		return err
	}
	w := &prefixWriter{out: out}
	pid, distrust := in.readRunPID()
	if pid != 0 && pid != os.Getpid() {
		return usagef("instance %s runs already (gw-instance run, pid %d)", in.Name, pid)
	}
	if distrust != "" {
		w.line("gw-instance", "warning: ignoring "+distrust)
	}
	for _, svc := range in.Status().Services {
		if svc.Supervised {
			return usagef("instance %s: service %s is supervised already (svscan or runsvdir)", in.Name, svc.Name)
		}
	}
	if err := in.listenersFree(s); err != nil {
		return err
	}
	pidFile := in.Path("state", "run.pid")
	if err := writeFile(pidFile, strconv.Itoa(os.Getpid())+"\n", 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)

	// Each daemon has its own context so that they stop in the reverse of
	// start order: listeners first, so that nothing new arrives, then the
	// runner, the injector last, once nobody can hand it a message.
	if os.Geteuid() == 0 && s.Users == (Users{}) {
		w.line("gw-instance", "warning: running as root and control/users names no user: every daemon runs as root"+
			" (gw-instance create --user ROLE:USER separates them)")
	}
	ds := in.Daemons(s)
	for _, d := range ds {
		if _, err := in.command(d, s); err != nil {
			return err
		}
	}
	// No multilog or svlogd runs here: Run keeps each daemon's log
	// directory itself, so that gw-qstat trace and show find the lines.
	w.logs = in.daemonLogs(ds, s.Flavour, w)
	defer w.close()
	cancels := make([]context.CancelFunc, len(ds))
	dones := make([]chan struct{}, len(ds))
	for i, d := range ds {
		var dctx context.Context
		dctx, cancels[i] = context.WithCancel(context.Background())
		dones[i] = make(chan struct{})
		go func() {
			defer close(dones[i])
			in.supervise(dctx, d, s, w)
		}()
		if i == 0 {
			waitForFile(ctx, in.InjectSocket(), socketWait)
		}
	}
	<-ctx.Done()
	for i := len(ds) - 1; i >= 0; i-- {
		cancels[i]()
		<-dones[i]
	}
	return nil
}

// listenersFree checks, before any daemon starts, that each listener's
// address can be bound: a port another process holds would otherwise make
// its daemon exit and restart over and over, its reason lost in the flow
// of logs.
func (in *Instance) listenersFree(s *Settings) error {
	for _, l := range s.Listeners {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			hint := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = fmt.Sprintf(": another process holds it; stop it, or move the listener (gw-instance listen %s %s %s ADDRESS)", in.Name, l.Face, l.Proto)
			}
			return usagef("instance %s: listener %s cannot listen on %s: %v%s", in.Name, l.Face, l.Addr, err, hint)
		}
		ln.Close()
	}
	return nil
}

// supervise runs d until ctx ends. A daemon that exits soon after its
// start waits twice as long as the last time before the next, up to
// maxDelay, as a supervisor should not spin on a daemon that cannot
// start; one that ran a while is restarted after restartDelay again.
func (in *Instance) supervise(ctx context.Context, d Daemon, s *Settings, w *prefixWriter) {
	delay := restartDelay
	for ctx.Err() == nil {
		started := time.Now()
		cmd, err := in.command(d, s)
		if err != nil {
			w.line("gw-instance", fmt.Sprintf("fatal: %s: %v", d.Name, err))
			return
		}
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				w.daemon(d.Name, sc.Text())
			}
			io.Copy(io.Discard, pr)
		}()
		if err := cmd.Start(); err != nil {
			pw.Close()
			<-done
			w.line("gw-instance", fmt.Sprintf("warning: %s: unable to start: %v", d.Name, err))
		} else {
			w.line("gw-instance", fmt.Sprintf("info start service=%s pid=%d", d.Name, cmd.Process.Pid))
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var werr error
			select {
			case werr = <-exited:
			case <-ctx.Done():
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case werr = <-exited:
				case <-time.After(stopWait):
					cmd.Process.Kill()
					werr = <-exited
				}
			}
			pw.Close()
			<-done
			status := "0"
			if werr != nil {
				status = werr.Error()
			}
			w.line("gw-instance", fmt.Sprintf("info exit service=%s pid=%d status=%q", d.Name, cmd.Process.Pid, status))
		}
		failedAtStart := time.Since(started) < quickExit
		if !failedAtStart {
			delay = restartDelay
		} else if ctx.Err() == nil {
			w.line("gw-instance", fmt.Sprintf("warning: service=%s exited within %s of its start; next start in %s (its last lines above say why)", d.Name, quickExit, delay))
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		if failedAtStart {
			delay = min(2*delay, maxDelay)
		}
	}
}

// command builds d's process: the run script's command, in the instance's
// directory, with the run script's environment.
func (in *Instance) command(d Daemon, s *Settings) (*exec.Cmd, error) {
	cmd := exec.Command(d.Argv[0], d.Argv[1:]...)
	cmd.Dir = in.Dir()
	cmd.Env = os.Environ()
	for k, v := range d.Environment(s) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Own process group: a Ctrl-C on the terminal reaches Run, which
	// then stops the daemons in order, not all of them at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if d.User != "" && os.Geteuid() == 0 {
		uid, gid, err := lookupIDs(d.User)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", d.User, err)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return cmd, nil
}

func waitForFile(ctx context.Context, path string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prefixWriter writes whole lines behind a daemon's name, one write each,
// and a daemon's own lines to its log directory too.
type prefixWriter struct {
	mu   sync.Mutex
	out  io.Writer
	logs map[string]*serviceLog // by daemon name
}

// daemon writes a line a daemon wrote: to out behind its name, and to
// its log. A log that fails is closed and named once; the terminal keeps
// the lines.
func (p *prefixWriter) daemon(name, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s: %s\n", name, text)
	l := p.logs[name]
	if l == nil {
		return
	}
	if err := l.line(time.Now(), text); err != nil {
		l.close()
		delete(p.logs, name)
		fmt.Fprintf(p.out, "gw-instance: warning: service=%s: its lines go to this terminal only: %v\n", name, err)
	}
}

func (p *prefixWriter) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		l.close()
	}
}

func (p *prefixWriter) line(name, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s: %s\n", name, text)
}
