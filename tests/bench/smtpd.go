package main

// The acceptance bench of gw-smtpd against Postfix, in the same run, on
// loopback: Postfix's smtp-source drives a private Postfix (smtpd, its
// defaults: durable queue files) and gw-smtpd + gw-queued, each relaying
// to its own smtp-sink on loopback (Postfix through relayhost, gw through
// gw-send), so both sides do the same work for a message. Rates are
// smtp-source's messages a second; CPU is the user + system time of every
// process of each side (from /proc, children reaped by Postfix's master
// included) from the start of a figure until the side is idle again, so
// relaying the figure's messages is counted too. The load generator and
// the sinks are not counted.
//
// The private Postfix never touches a system one: postfix -c with its own
// main.cf and master.cf, queue_directory and data_directory under the work
// directory, smtpd on one loopback port, no other inet service, and mail
// only to the sink on loopback.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gw/lib/queue"
)

var (
	smtpdMessages = flag.Int("smtpd-messages", 2000, "messages a figure of the gw-smtpd/Postfix bench (0: skip it)")
	smtpdIdle     = flag.Int("smtpd-idle", 1000, "idle sessions for the gw-smtpd memory figure")
	oldBin        = flag.String("old-bin", "", "directory of an older build: the smtpd section also prints gw-smtpd's CPU a message, old against new, in the same run")
)

const (
	benchFrom = "bench@example.org"
	benchTo   = "sink@example.net"
)

// side is one of the two systems under test.
type side struct {
	name string
	addr string       // where smtp-source connects
	pids func() []int // every process of the side
	reap func() int   // pid whose reaped-children time counts, 0 if none
	// progs names the side's programs and their pids, for CPU program by
	// program; nil where the side does not tell them apart.
	progs func() []namedPid
	stop  func()
}

func smtpdBench(work string) {
	if *smtpdMessages <= 0 {
		return
	}
	fmt.Printf("\ngw-smtpd against Postfix %s, driven by smtp-source, %d messages a figure, both relaying to smtp-sink:\n",
		postfixVersion(), *smtpdMessages)
	for _, p := range []string{"smtp-source", "smtp-sink", "postfix"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  %s is not installed (make peers): skipped\n", p)
			return
		}
	}
	dir := filepath.Join(work, "smtpd")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)

	gwSink, stopGWSink, err := startSink(dir, "gw")
	if err != nil {
		fmt.Println("  smtp-sink:", err)
		return
	}
	defer stopGWSink()
	gw, err := startGW(filepath.Join(dir, "gw"), gwSink)
	if err != nil {
		fmt.Println("  gw:", err)
		return
	}
	defer gw.stop()

	var pf *side
	pfSink, stopPFSink, err := startSink(dir, "postfix")
	if err == nil {
		defer stopPFSink()
		// Postfix's daemons run as the postfix user: its directory must
		// be reachable, which the bench's 0700 work directory is not.
		var pdir string
		if pdir, err = os.MkdirTemp("", "gw-bench-postfix-"); err == nil {
			defer os.RemoveAll(pdir)
			os.Chmod(pdir, 0o755)
			pf, err = startPostfix(pdir, pfSink)
		}
	}
	if err != nil {
		fmt.Printf("  Postfix could not be started, gw's figures only: %v\n", err)
		pf = nil
	} else {
		defer pf.stop()
	}

	fmt.Printf("%5s %5s %12s %9s %7s %14s %9s %7s\n", "size", "sess", "Postfix msg/s", "gw msg/s", "ratio", "Postfix CPU s", "gw CPU s", "ratio")
	fmt.Printf("%5s %5s %12s %9s %7s %14s %9s %7s\n", "", "", "", "", "", "/1000 msg", "/1000 msg", "")
	var normal10 float64
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		for _, sess := range []int{1, 10, 50} {
			n := *smtpdMessages
			if size >= 100<<10 {
				n = max(n/2, 1)
			}
			var p, g figure
			var perr error
			if pf != nil {
				p, perr = measureSide(pf, size, sess, n)
				if perr != nil {
					fmt.Printf("  Postfix %dK %d sessions failed: %v\n", size>>10, sess, perr)
				}
			}
			g, gerr := measureSide(gw, size, sess, n)
			if gerr != nil {
				fmt.Printf("  gw %dK %d sessions failed: %v\n", size>>10, sess, gerr)
				continue
			}
			if size == 10<<10 && sess == 10 {
				normal10 = g.rate
			}
			fmt.Printf("%4dK %5d %12s %9.0f %7s %14s %9.3f %7s\n", size>>10, sess,
				num(p.rate, "%.0f"), g.rate, ratio(g.rate, p.rate),
				num(p.cpuPer1000, "%.3f"), g.cpuPer1000, ratio(g.cpuPer1000, p.cpuPer1000))
		}
	}
	fmt.Println("  (rate ratio: gw/Postfix, higher is better; CPU ratio: gw/Postfix, lower is better)")
	if *oldBin != "" {
		oldAgainstNew(dir, gw)
	}

	// The relay target goes down: gw-send's route now leads to a closed
	// port, so every delivery fails and is deferred while mail comes in.
	if normal10 > 0 {
		closed := closedPort()
		check(os.WriteFile(filepath.Join(dir, "gw", "control", "smtproutes"), []byte(":"+closed+"\n"), 0o644))
		signalAll(gwSend, "HUP")
		time.Sleep(200 * time.Millisecond)
		down, err := measureSide(gw, 10<<10, 10, *smtpdMessages)
		if err != nil {
			fmt.Println("  gw with the relay target down failed:", err)
		} else {
			fmt.Printf("gw, 10K, 10 sessions, relay target down (%s closed): %.0f msg/s, %.0f%% of the %.0f msg/s with it up\n",
				closed, down.rate, 100*down.rate/normal10, normal10)
		}
	}

	if rss, base, err := idleMemory(gw, *smtpdIdle); err != nil {
		fmt.Println("  idle sessions:", err)
	} else {
		fmt.Printf("gw-smtpd resident memory: %.1f MiB with %d idle sessions open (%.1f MiB idle), %.1f KiB a session\n",
			float64(rss)/(1<<20), *smtpdIdle, float64(base)/(1<<20), float64(rss-base)/1024/float64(*smtpdIdle))
	}
}

type figure struct {
	rate       float64 // messages a second, as smtp-source saw them accepted
	cpuPer1000 float64 // CPU seconds of the side a thousand messages
}

func num(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// measureSide sends n messages of size bytes over sess parallel sessions
// and returns the rate and the side's CPU a thousand messages, counted
// until the side is idle again.
func measureSide(s *side, size, sess, n int) (figure, error) {
	settle(s, 5*time.Second)
	cpu0 := sideCPU(s)
	start := time.Now()
	cmd := exec.Command("smtp-source", "-s", strconv.Itoa(sess), "-l", strconv.Itoa(size), "-m", strconv.Itoa(n),
		"-f", benchFrom, "-t", benchTo, "-M", "client.example", s.addr)
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		return figure{}, fmt.Errorf("smtp-source: %v: %s", err, strings.TrimSpace(string(out)))
	}
	settle(s, 60*time.Second)
	cpu := sideCPU(s) - cpu0
	return figure{rate: float64(n) / elapsed.Seconds(), cpuPer1000: cpu.Seconds() * 1000 / float64(n)}, nil
}

// settle waits until the side has used no CPU for 300 ms (its queue is
// delivered), at most limit.
func settle(s *side, limit time.Duration) {
	settleOn(func() time.Duration { return sideCPU(s) }, limit)
}

// settleQuiet is how long settleOn's processes stay idle before it
// returns: the last of their work ended about that long before.
const settleQuiet = 300 * time.Millisecond

// settleOn waits until cpu has grown by no more than 10 ms in each of
// three 100 ms ticks, at most limit.
func settleOn(cpu func() time.Duration, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last := cpu()
	quiet := 0
	for time.Now().Before(deadline) && quiet < 3 {
		time.Sleep(100 * time.Millisecond)
		now := cpu()
		if now-last <= 10*time.Millisecond {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}

// sideCPU is the CPU time of the side's processes, plus what their
// reaped children used.
func sideCPU(s *side) time.Duration {
	var t time.Duration
	for _, pid := range s.pids() {
		u, st, _, _ := procTimes(pid)
		t += u + st
	}
	if r := s.reap(); r != 0 {
		_, _, cu, cs := procTimes(r)
		t += cu + cs
	}
	return t
}

type namedPid struct {
	name string
	pid  int
}

// progCPU is the CPU time of one program of a side.
type progCPU struct {
	name     string
	cpu      time.Duration
	switches int64
}

// progCPUs is the CPU time of each of the side's named programs.
func progCPUs(s *side) []progCPU {
	if s.progs == nil {
		return nil
	}
	var out []progCPU
	for _, p := range s.progs() {
		u, st, _, _ := procTimes(p.pid)
		out = append(out, progCPU{p.name, u + st, procSwitches(p.pid)})
	}
	return out
}

// procSwitches is the context switches, voluntary or not, of pid's
// live threads: each is a wake-up the program paid for.
func procSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// procTimes returns utime, stime, cutime and cstime of pid.
func procTimes(pid int) (u, s, cu, cs time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * 10 * time.Millisecond // USER_HZ 100
	}
	return tick(11), tick(12), tick(13), tick(14)
}

// descendants returns root and every process under it.
func descendants(root int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		parent[pid] = ppid
	}
	var out []int
	for pid := range parent {
		for p := pid; p != 0; p = parent[p] {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort() string { return freePort() }

func waitListening(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// startSink runs smtp-sink on a free loopback port.
func startSink(dir, name string) (string, func(), error) {
	addr := freePort()
	cmd := exec.Command("smtp-sink", "-u", "nobody", addr, "256")
	if os.Getuid() != 0 {
		cmd = exec.Command("smtp-sink", addr, "256")
	}
	log, _ := os.Create(filepath.Join(dir, name+"-sink.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); log.Close() }
	if err := waitListening(addr, 5*time.Second); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}

// gwSend is the running gw-send, for the relay-down figure.
var gwSend *exec.Cmd

// startGW runs gw-queued, gw-send (to the sink, after any smtproutes lines
// given) and gw-smtpd standalone.
func startGW(dir, sink string, routes ...string) (*side, error) {
	return startGWControl(dir, sink, nil, routes...)
}

// startGWControl is startGW with more control files (name: contents).
func startGWControl(dir, sink string, control map[string]string, routes ...string) (*side, error) {
	return startGWWith(dir, sink, control, nil, routes...)
}

// startGWWith is startGWControl with gw-smtpd's extra environment.
func startGWWith(dir, sink string, control map[string]string, smtpdEnv []string, routes ...string) (*side, error) {
	return startGWFrom(*binDir, dir, sink, control, smtpdEnv, routes...)
}

// startGWFrom is startGWWith with the programs of the build in bin.
func startGWFrom(bin, dir, sink string, control map[string]string, smtpdEnv []string, routes ...string) (*side, error) {
	ctl := filepath.Join(dir, "control")
	q := filepath.Join(dir, "queue")
	check(os.MkdirAll(ctl, 0o755))
	files := map[string]string{
		"me": "gw.bench.example\n", "rcpthosts": "example.net\n",
		"smtproutes": strings.Join(append(routes, ":"+sink), "\n") + "\n",
	}
	for name, body := range control {
		files[name] = body
	}
	for name, body := range files {
		check(os.WriteFile(filepath.Join(ctl, name), []byte(body), 0o644))
	}
	if err := queue.Init(q); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "inject.sock")
	addr := freePort()
	var cmds []*exec.Cmd
	start := func(env []string, name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds = append(cmds, cmd)
		return nil
	}
	stop := func() {
		for i := len(cmds) - 1; i >= 0; i-- {
			cmds[i].Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { cmds[i].Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmds[i].Process.Kill()
				<-done
			}
		}
	}
	err := start(nil, "gw-queued", "--queue", q, "--socket", sock)
	for i := 0; err == nil && i < 100; i++ {
		if _, serr := os.Stat(sock); serr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		err = start(nil, "gw-send", "--queue", q, "--control-dir", ctl)
		gwSend = cmds[len(cmds)-1]
	}
	if err == nil {
		args := []string{"--control-dir", ctl, "--listen", addr, "--concurrency", strconv.Itoa(*smtpdIdle + 100), "--per-ip", "0"}
		// -H: the bench measures sessions, not a resolver, and the one of
		// /etc/resolv.conf may be off the host (an old build without the
		// flag looked nothing up)
		if knowsFlag(filepath.Join(bin, "gw-smtpd"), "-H") {
			args = append(args, "-H")
		}
		err = start(append([]string{"GW_QUEUED=" + sock}, smtpdEnv...), "gw-smtpd", args...)
	}
	if err == nil {
		err = waitListening(addr, 5*time.Second)
	}
	if err != nil {
		stop()
		return nil, err
	}
	pids := make([]int, len(cmds))
	named := make([]namedPid, len(cmds))
	for i, c := range cmds {
		pids[i] = c.Process.Pid
		named[i] = namedPid{filepath.Base(c.Path), c.Process.Pid}
	}
	return &side{name: "gw", addr: addr, stop: stop,
		pids:  func() []int { return pids },
		progs: func() []namedPid { return named },
		// gw-smtpd's reaped children (gw-scan as QMAILQUEUE) are the
		// side's; a gw-smtpd that runs none adds nothing.
		reap: func() int { return pids[len(pids)-1] }}, nil
}

func signalAll(cmd *exec.Cmd, sig string) {
	if cmd != nil {
		exec.Command("kill", "-"+sig, strconv.Itoa(cmd.Process.Pid)).Run()
	}
}

func postfixVersion() string {
	out, err := exec.Command("postconf", "-d", "-h", "mail_version").Output()
	if err != nil {
		return "(version unknown)"
	}
	return strings.TrimSpace(string(out))
}

// startPostfix sets up and starts a private Postfix in dir: its smtpd on
// a loopback port, relaying everything to sink.
func startPostfix(dir, sink string, extra ...string) (*side, error) {
	return startPostfixMaster(dir, sink, "", extra...)
}

// startPostfixMaster is startPostfix with more master.cf services
// (masterExtra, lines as master.cf has them).
func startPostfixMaster(dir, sink, masterExtra string, extra ...string) (*side, error) {
	if os.Getuid() != 0 {
		return nil, errors.New("postfix -c needs root")
	}
	for _, d := range []string{"conf", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// The data directory belongs to the mail owner, as postfix-files says.
	exec.Command("chown", "postfix", filepath.Join(dir, "data")).Run()
	conf := filepath.Join(dir, "conf")
	addr := freePort()
	mainCF := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"maillog_file = " + filepath.Join(dir, "maillog"),
		"maillog_file_prefixes = " + dir,
		"mail_owner = postfix",
		"setgid_group = postdrop",
		"myhostname = postfix.bench.example",
		"mydomain = bench.example",
		"myorigin = $myhostname",
		"mydestination =",
		"inet_interfaces = loopback-only",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"relay_domains = example.net",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
		"relayhost = [" + strings.Replace(sink, ":", "]:", 1),
		"smtp_dns_support_level = disabled",
		"local_transport = error:local delivery is off in this bench",
		"alias_maps =",
		"alias_database =",
		"biff = no",
		"smtputf8_enable = no",
	}, "\n") + "\n" + strings.Join(append(extra, ""), "\n")
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return nil, err
	}
	master, err := privateMasterCF(addr)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(master+masterExtra), 0o644); err != nil {
		return nil, err
	}
	postfix := func(args ...string) error {
		out, err := exec.Command("postfix", append([]string{"-c", conf}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("postfix -c %s %s: %v: %s", conf, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	postfix("check") // creates the queue's directories; warnings are not fatal
	if err := postfix("start"); err != nil {
		// postfix writes its fatal errors to a terminal only: look them up.
		out, _ := exec.Command("postconf", "-c", conf, "-n").CombinedOutput()
		return nil, fmt.Errorf("%v (run it on a terminal to see why); its settings:\n%s", err, out)
	}
	stop := func() { postfix("stop") }
	if err := waitListening(addr, 10*time.Second); err != nil {
		stop()
		b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		return nil, fmt.Errorf("%v; maillog:\n%s", err, b)
	}
	pidFile := filepath.Join(dir, "queue", "pid", "master.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		stop()
		return nil, err
	}
	master0, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		stop()
		return nil, fmt.Errorf("%s: %v", pidFile, err)
	}
	return &side{name: "Postfix", addr: addr, stop: stop,
		pids: func() []int { return descendants(master0) },
		reap: func() int { return master0 }}, nil
}

// privateMasterCF is the installed master.cf with smtpd on addr only (no
// other inet service) and no chroot, so the private queue needs no copies
// of /etc files.
func privateMasterCF(addr string) (string, error) {
	f, err := os.Open("/etc/postfix/master.cf")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	skip := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skip {
				b.WriteString(line + "\n")
			}
			continue
		}
		fields := strings.Fields(line)
		skip = len(fields) < 8 || fields[1] == "inet"
		if skip {
			continue
		}
		fields[4] = "n" // chroot
		b.WriteString(strings.Join(fields, " ") + "\n")
	}
	b.WriteString(addr + " inet n - n - - smtpd\n")
	return b.String(), sc.Err()
}

// idleMemory opens n sessions to gw-smtpd that each say EHLO and then
// wait, and returns gw-smtpd's resident memory with them open and before.
func idleMemory(s *side, n int) (rss, base int64, err error) {
	pid := s.pids()[len(s.pids())-1] // gw-smtpd, started last
	base = vmRSS(pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			return 0, 0, fmt.Errorf("session %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
			return 0, 0, fmt.Errorf("session %d: greeting %q %v", i, l, err)
		}
		fmt.Fprintf(c, "EHLO idle%d.example\r\n", i)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return 0, 0, fmt.Errorf("session %d: EHLO: %v", i, err)
			}
			if strings.HasPrefix(l, "250 ") {
				break
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	return vmRSS(pid), base, nil
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
