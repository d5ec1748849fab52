package main

// The scanned path side by side, in one run, the same messages through
// each: gw-smtpd → (gw-scan as QMAILQUEUE, or gw-scan's proxy in front) →
// gw-queued → gw-send → smtp-sink, against Postfix → smtp-sink with
// rspamd's proxy worker as its milter, against the seeds' Postfix →
// amavisd-new → Postfix (clamd alone, and with SpamAssassin in amavisd),
// and the scanners asked directly by gw's own clients (their ceiling on
// this machine). Each figure: the rate the clients saw and the rate until
// the last message left for the sink (Postfix answers before amavisd
// scans: the pipelines compare by the second), the CPU a message of the system under test (gw's
// programs, or Postfix's) and of the scanners (clamd, rspamd with its
// workers), and the latency of a transaction (MAIL to the reply to the
// final dot), p50 and p99. On a busy machine CPU a message is the robust
// figure; rates move with the neighbours.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	"gw/lib/scan"
	"gw/tests/internal/clamdtest"
	"gw/tests/internal/rspamdtest"
	"gw/tests/internal/spamdtest"
)

var (
	scanPathMessages  = flag.Int("scanpath-messages", 600, "messages a figure of the scanned-path bench (0: skip it)")
	scanPathSessions  = flag.Int("scanpath-sessions", 10, "parallel sessions of the scanned-path bench")
	scanPathSpamd     = flag.Int("scanpath-spamd", 100, "messages a figure through SpamAssassin's spamd, about 10 a second here (0: skip spamd)")
	scanPathPace      = flag.Float64("scanpath-pace", 0, "send every gw path's messages at this rate, messages a second (0: as fast as answered): gw's own cost a message at a scanner's pace, without the scanner")
	scanPathSpamdSock = flag.Bool("scanpath-spamd-unix", false, "gw's paths reach spamd on its unix socket, not on its loopback port")
	scanPathOnly      = flag.String("scanpath-only", "", "run only the scanned-path figures whose name holds one of these comma-separated words (clamd, spamd, proxy, wrapper, Postfix, amavis, ...)")
)

// scanPathWanted reports whether the figure named name is to be run.
func scanPathWanted(name string) bool {
	if *scanPathOnly == "" {
		return true
	}
	for _, w := range strings.Split(*scanPathOnly, ",") {
		if w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// pacedName is the unscanned path sent at the rate of the proxy with
// SpamAssassin: gw's own programs at that rate, scanning aside.
const pacedName = "gw-smtpd, no scan, paced as spamd's proxy"

// postfixPacedName is Postfix's unscanned path sent at the rate of gw's
// proxy with spamd: a multi-process MTA's own cost a message at that
// pace, on the same machine.
const postfixPacedName = "Postfix, no scan, paced as spamd's proxy"

// spamdAfter is spamd's ceiling measured again after gw's paths through
// it: the neighbours' load moves between the two, and the ratio to the
// goal is taken against the mean of both.
const spamdAfter = "spamd alone (SYMBOLS), again"

// loadAvg is the machine's load, the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// scanner is a scanner daemon whose CPU is counted apart: its processes,
// and what root reaped of the children that ended (spamd replaces a
// child after its 200th connection; without the child's time in its
// parent's, the count went back when one ended).
type scanner struct {
	name string
	pids func() []int
	root int // 0: none reaped
}

func scanPathBench(work string) {
	n, sess, size := *scanPathMessages, *scanPathSessions, 10<<10
	if n <= 0 {
		return
	}
	fmt.Printf("\nThe scanned path, %d KiB messages, %d sessions, %d messages a figure, relaying to smtp-sink (load %s):\n", size>>10, sess, n, loadAvg())
	dir := filepath.Join(work, "scanpath")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)

	var scanners []scanner
	// amavisd-new's user reaches clamd's socket, and clamd reads
	// amavisd's files: clamd's directory is outside the 0700 work
	// directory.
	cdir, _ := os.MkdirTemp("", "gw-bench-clamd-")
	os.Chmod(cdir, 0o755)
	defer os.RemoveAll(cdir)
	clamd, err := clamdtest.Start(cdir, "GATEWAY-BENCH-MARKER", nil)
	if err != nil {
		fmt.Println("  clamd:", err)
	} else {
		defer clamd.Stop()
		scanners = append(scanners, scanner{"clamd", func() []int { return []int{clamd.Cmd.Process.Pid} }, 0})
	}
	// rspamd's directory is reached by its workers; Postfix's by its
	// daemons: neither may be under the bench's 0700 work directory.
	rdir, _ := os.MkdirTemp("", "gw-bench-rspamd-")
	defer os.RemoveAll(rdir)
	rsp, err := rspamdtest.Start(rdir, rspamdtest.Options{Workers: 2, Milter: true})
	if err != nil {
		fmt.Println("  rspamd:", err)
	} else {
		defer rsp.Stop()
		scanners = append(scanners, scanner{"rspamd", func() []int { return descendants(rsp.Cmd.Process.Pid) }, rsp.Cmd.Process.Pid})
	}
	var sa *spamdtest.Spamd
	if *scanPathSpamd > 0 {
		// spamd's children run as debian-spamd: its directory is outside
		// the 0700 work directory too.
		sdir, _ := os.MkdirTemp("", "gw-bench-spamd-")
		os.Chmod(sdir, 0o755)
		defer os.RemoveAll(sdir)
		if sa, err = spamdtest.Start(sdir, 2, nil); err != nil {
			fmt.Println("  spamd:", err)
		} else {
			defer sa.Stop()
			scanners = append(scanners, scanner{"spamd", func() []int { return descendants(sa.Cmd.Process.Pid) }, sa.Cmd.Process.Pid})
		}
	}
	scannerCPU := func() time.Duration {
		var t time.Duration
		for _, s := range scanners {
			for _, pid := range s.pids() {
				u, st, _, _ := procTimes(pid)
				t += u + st
			}
			if s.root != 0 {
				_, _, cu, cs := procTimes(s.root)
				t += cu + cs
			}
		}
		return t
	}
	msg := scanPathMessage(size)

	fmt.Printf("%-40s %8s %8s %12s %12s %8s %8s\n", "path", "msg/s", "done/s", "own CPU ms", "scanner ms", "p50 ms", "p99 ms")
	got := map[string]pathFigure{}
	row := func(name string, f pathFigure, err error) {
		if err == errSkipped {
			return
		}
		if err != nil {
			fmt.Printf("%-40s failed: %v\n", name, err)
			return
		}
		got[name] = f
		done := "-"
		if f.doneRate > 0 {
			done = fmt.Sprintf("%.1f", f.doneRate)
		}
		fmt.Printf("%-40s %8.1f %8s %12.2f %12.2f %8.1f %8.1f\n", name, f.rate, done, f.ownMs, f.scanMs, f.p50, f.p99)
		if len(f.progs) > 0 {
			var parts []string
			for _, p := range f.progs {
				part := fmt.Sprintf("%s %.2f", p.name, p.ms)
				if p.switches > 0 {
					part += fmt.Sprintf(" (%.0f switches)", p.switches)
				}
				parts = append(parts, part)
			}
			fmt.Printf("  %-38s own CPU ms a message: %s\n", "", strings.Join(parts, ", "))
		}
	}

	// The scanners alone, asked by gw-scan's own clients from sess
	// goroutines: the ceiling a path through them can reach.
	if clamd != nil {
		c := &scan.Clamd{Addr: clamd.Sock, Timeout: 30 * time.Second}
		f, err := directIf("clamd alone (zINSTREAM)", n, sess, scannerCPU, func() error {
			_, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
			return err
		})
		row("clamd alone (zINSTREAM)", f, err)
	}
	if rsp != nil {
		r := &scan.Rspamd{Addr: rsp.Addr, Timeout: 30 * time.Second}
		f, err := directIf("rspamd alone (/checkv2)", n, sess, scannerCPU, func() error {
			_, err := r.Check(context.Background(), bytes.NewReader(msg), int64(len(msg)), scan.Meta{From: benchFrom, Rcpts: []string{benchTo}, IP: "127.0.0.1", Helo: "client.example"})
			return err
		})
		row("rspamd alone (/checkv2)", f, err)
	}

	if sa != nil {
		c := &scan.Spamd{Addr: sa.Addr, Timeout: 60 * time.Second}
		f, err := directIf("spamd alone (SYMBOLS)", *scanPathSpamd, sess, scannerCPU, func() error {
			_, err := c.Check(context.Background(), bytes.NewReader(msg), int64(len(msg)))
			return err
		})
		row("spamd alone (SYMBOLS)", f, err)
	}

	type path struct {
		name    string
		control map[string]string
		wrapper bool
		proxy   bool
		n       int
		// pace names the figure whose rate this one is sent at: the
		// unscanned path at the rate spamd lets the scanned one go is
		// the cost of gw's own programs at that rate, scanning aside.
		pace string
	}
	var paths = []path{{"gw-smtpd, no scan", nil, false, false, 0, ""}}
	if clamd != nil {
		cl := map[string]string{"clamd": clamd.Sock + "\n"}
		paths = append(paths, path{"gw-smtpd + gw-scan wrapper (clamd)", cl, true, false, 0, ""}, path{"gw-scan proxy (clamd) + gw-smtpd", cl, false, true, 0, ""})
	}
	var rspamdPaths []path
	if rsp != nil {
		rc := map[string]string{"rspamd": rsp.Addr + "\n"}
		_, port, _ := strings.Cut(rsp.Milter, ":")
		mc := map[string]string{"milters": "rspamd inet:" + port + "@127.0.0.1 timeout=30s\n"}
		rspamdPaths = []path{{"gw-smtpd + gw-scan wrapper (rspamd)", rc, true, false, 0, ""}, {"gw-scan proxy (rspamd) + gw-smtpd", rc, false, true, 0, ""},
			{"gw-smtpd + rspamd milter (proxy worker)", mc, false, false, 0, ""}}
		paths = append(paths, rspamdPaths...)
	}
	if sa != nil {
		spamdAt := sa.Addr
		if *scanPathSpamdSock {
			spamdAt = sa.Sock
		}
		sc := map[string]string{"spamd": spamdAt + "\n", "scantimeout": "120\n"}
		if clamd != nil {
			sc["clamd"] = clamd.Sock + "\n"
		}
		paths = append(paths, path{"gw-smtpd + gw-scan wrapper (clamd+spamd)", sc, true, false, *scanPathSpamd, ""},
			path{"gw-scan proxy (clamd+spamd) + gw-smtpd", sc, false, true, *scanPathSpamd, ""},
			path{pacedName, nil, false, false, *scanPathSpamd, "gw-scan proxy (clamd+spamd) + gw-smtpd"})
	}
	startGWPath := func(p path, pdir, sink string) (*side, error) {
		var env []string
		if p.wrapper {
			env = []string{"QMAILQUEUE=" + filepath.Join(*binDir, "gw-scan"), "GW_CONTROL_DIR=" + filepath.Join(pdir, "control")}
		}
		s, err := startGWWith(pdir, sink, p.control, env)
		if err == nil && p.proxy {
			s, err = scanProxySide(pdir, s, p.control)
		}
		return s, err
	}
	for i, p := range paths {
		if !scanPathWanted(p.name) {
			continue
		}
		var pace float64
		if p.pace != "" {
			f, ok := got[p.pace]
			if !ok {
				continue
			}
			pace = f.rate
		} else if *scanPathPace > 0 && !strings.Contains(p.name, "spamd") {
			pace = *scanPathPace
		}
		pdir := filepath.Join(dir, fmt.Sprintf("gw%d", i))
		sink, stopSink, err := startSink(dir, fmt.Sprintf("gw%d", i))
		if err != nil {
			row(p.name, pathFigure{}, err)
			continue
		}
		s, err := startGWPath(p, pdir, sink)
		if err != nil {
			stopSink()
			row(p.name, pathFigure{}, err)
			continue
		}
		f, err := measureCPU(s, func() time.Duration { return sideCPU(s) }, false, msg, cmp.Or(p.n, n), sess, pace, scannerCPU)
		row(p.name, f, err)
		s.stop()
		stopSink()
	}
	var probes []rspamdProbe
	for i, p := range rspamdPaths {
		if !scanPathWanted(p.name) {
			continue
		}
		probes = append(probes, rspamdProbe{p.name, func(sink string) (*side, func(), error) {
			pdir := filepath.Join(dir, fmt.Sprintf("probe%d", i))
			s, err := startGWPath(p, pdir, sink)
			if err != nil {
				return nil, nil, err
			}
			return s, s.stop, nil
		}})
	}

	if sa != nil && scanPathWanted("spamd alone") {
		c := &scan.Spamd{Addr: sa.Addr, Timeout: 60 * time.Second}
		f, err := direct(*scanPathSpamd, sess, scannerCPU, func() error {
			_, err := c.Check(context.Background(), bytes.NewReader(msg), int64(len(msg)))
			return err
		})
		row(spamdAfter, f, err)
	}

	// Postfix, the same messages, plain and with rspamd's milter.
	if _, err := exec.LookPath("postfix"); err != nil {
		fmt.Println("  Postfix is not installed: its figures skipped")
		return
	}
	pf := []struct {
		name  string
		extra []string
		pace  float64
		n     int
	}{{"Postfix, no scan", nil, *scanPathPace, n}}
	// Postfix's own chain at the rate spamd let gw's proxy go: what a
	// message costs a multi-process MTA at that pace on this machine,
	// beside gw's own cost at the same pace.
	if f, ok := got["gw-scan proxy (clamd+spamd) + gw-smtpd"]; ok {
		pf = append(pf, struct {
			name  string
			extra []string
			pace  float64
			n     int
		}{postfixPacedName, nil, f.rate, *scanPathSpamd})
	}
	if rsp != nil {
		milter := struct {
			name  string
			extra []string
			pace  float64
			n     int
		}{"Postfix + rspamd milter (proxy worker)", []string{"smtpd_milters = inet:" + rsp.Milter, "milter_protocol = 6", "milter_default_action = tempfail"}, 0, n}
		pf = append(pf, milter)
		if scanPathWanted(milter.name) {
			probes = append(probes, rspamdProbe{milter.name, func(sink string) (*side, func(), error) {
				pdir, _ := os.MkdirTemp("", "gw-bench-postfix-")
				os.Chmod(pdir, 0o755)
				s, err := startPostfix(pdir, sink, milter.extra...)
				if err != nil {
					os.RemoveAll(pdir)
					return nil, nil, err
				}
				return s, func() { s.stop(); os.RemoveAll(pdir) }, nil
			}})
		}
	}
	for i, p := range pf {
		if !scanPathWanted(p.name) {
			continue
		}
		sink, stopSink, err := startSink(dir, fmt.Sprintf("pf%d", i))
		if err != nil {
			row(p.name, pathFigure{}, err)
			continue
		}
		pdir, _ := os.MkdirTemp("", "gw-bench-postfix-")
		os.Chmod(pdir, 0o755)
		s, err := startPostfix(pdir, sink, p.extra...)
		if err != nil {
			row(p.name, pathFigure{}, err)
		} else {
			f, err := measureCPU(s, func() time.Duration { return sideCPU(s) }, false, msg, p.n, sess, p.pace, scannerCPU)
			row(p.name, f, err)
			s.stop()
		}
		stopSink()
		os.RemoveAll(pdir)
	}
	amavisBench(clamd, sa != nil, dir, n, sess, msg, scannerCPU, row)
	fmt.Println("  (own CPU a message: gw-scan, gw-smtpd, gw-queued and gw-send, the wrapper's gw-scan counted in gw-smtpd's reaped children;")
	fmt.Println("   or Postfix's daemons and amavisd. scanner: clamd, spamd and rspamd a message)")
	scanPathGoals(got)
	if len(probes) > 0 {
		rspamdDecisions(probes)
	}
}

// amavisBench runs the seeds' pipeline, Postfix → amavisd-new → Postfix,
// with clamd alone and with SpamAssassin inside amavisd.
func amavisBench(clamd *clamdtest.Clamd, spam bool, dir string, n, sess int, msg []byte, scannerCPU func() time.Duration, row func(string, pathFigure, error)) {
	if _, err := exec.LookPath("amavisd"); err != nil || clamd == nil {
		fmt.Println("  amavisd-new or clamd is missing: the seeds' pipeline skipped")
		return
	}
	runs := []struct {
		name       string
		n, servers int
		spam       bool
	}{{"Postfix + amavisd-new (clamd)", n, 4, false}}
	if spam {
		// Two amavisd children, as spamd has two: SpamAssassin's rules
		// run in each.
		runs = append(runs, struct {
			name       string
			n, servers int
			spam       bool
		}{"Postfix + amavisd-new (clamd)+SA", *scanPathSpamd, 2, true})
	}
	for i, r := range runs {
		if !scanPathWanted(r.name) {
			continue
		}
		sink, stopSink, err := startSink(dir, fmt.Sprintf("amavis%d", i))
		if err != nil {
			row(r.name, pathFigure{}, err)
			continue
		}
		f, amavisMs, err := amavisPath(clamd.Sock, sink, r.n, sess, r.servers, r.spam, msg, scannerCPU)
		row(r.name, f, err)
		if err == nil {
			fmt.Printf("  %s: amavisd alone %.2f ms a message of the own CPU; rate until the last message reached the sink\n", r.name, amavisMs)
		}
		stopSink()
	}
}

// scanPathGoals prints the ratios issue 16 sets as goals, from the
// figures of this run, and the machine's load at their end.
//
// gw's own CPU is that of every gw program the message passes: gw-scan
// (the proxy, or the wrapper gw-smtpd runs, counted in gw-smtpd's reaped
// children), gw-smtpd, gw-queued and gw-send, which delivers to the
// sink; the seeds' pipeline is counted the same way, Postfix's daemons
// and amavisd. spamd lets the scanned paths go at a few messages a
// second, and at that rate each message finds every daemon idle and
// wakes it: the unscanned path paced to the same rate is gw's own cost
// there, scanning aside, and the difference is what scanning adds.
func scanPathGoals(got map[string]pathFigure) {
	ratio := func(a, b string) string {
		fa, oka := got[a]
		fb, okb := got[b]
		if !oka || !okb || fb.rate == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f×", fa.rate/fb.rate)
	}
	// Postfix answers before amavisd scans: the pipelines are compared
	// by the rate their messages left for the sink.
	done := func(a, b string) string {
		fa, oka := got[a]
		fb, okb := got[b]
		if !oka || !okb || fb.doneRate == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f×", fa.doneRate/fb.doneRate)
	}
	am := "Postfix + amavisd-new (clamd)"
	fmt.Printf("  clamd alone, gw over the amavis pipeline, delivered (goal ≥ 3×): wrapper %s, proxy %s\n",
		done("gw-smtpd + gw-scan wrapper (clamd)", am), done("gw-scan proxy (clamd) + gw-smtpd", am))
	fmt.Printf("  clamd+SpamAssassin, gw over the amavis pipeline, delivered: wrapper %s, proxy %s\n",
		done("gw-smtpd + gw-scan wrapper (clamd+spamd)", am+"+SA"), done("gw-scan proxy (clamd+spamd) + gw-smtpd", am+"+SA"))
	pr := "Postfix + rspamd milter (proxy worker)"
	fmt.Printf("  rspamd, gw over Postfix + rspamd's milter, same run (goal ≥ 1×): wrapper %s, proxy %s, gw-smtpd + the same milter %s\n",
		ratio("gw-smtpd + gw-scan wrapper (rspamd)", pr), ratio("gw-scan proxy (rspamd) + gw-smtpd", pr), ratio("gw-smtpd + rspamd milter (proxy worker)", pr))
	fmt.Printf("  rspamd, delivered, over the SpamAssassin pipeline (amavisd-new+SA) (goal ≥ 5×): wrapper %s, proxy %s, gw-smtpd + milter %s, Postfix + milter %s\n",
		done("gw-smtpd + gw-scan wrapper (rspamd)", am+"+SA"), done("gw-scan proxy (rspamd) + gw-smtpd", am+"+SA"),
		done("gw-smtpd + rspamd milter (proxy worker)", am+"+SA"), done(pr, am+"+SA"))

	// spamd's ceiling: spamd asked directly by as many clients as the
	// paths have sessions, with all its children (spamdtest starts them
	// all at once), before and after gw's paths.
	var ceiling []float64
	for _, name := range []string{"spamd alone (SYMBOLS)", spamdAfter} {
		if f, ok := got[name]; ok {
			ceiling = append(ceiling, f.rate)
		}
	}
	if len(ceiling) > 0 {
		mean := 0.0
		for _, r := range ceiling {
			mean += r / float64(len(ceiling))
		}
		share := func(name string) string {
			f, ok := got[name]
			if !ok {
				return "n/a"
			}
			verdict := "met"
			if f.rate < 0.95*mean {
				verdict = "not met"
			}
			return fmt.Sprintf("%.2f (%s)", f.rate/mean, verdict)
		}
		fmt.Printf("  SpamAssassin, gw's scanned rate over spamd's ceiling %.2f msg/s (measured %v; goal ≥ 0.95): wrapper %s, proxy %s, the amavis pipeline %s\n",
			mean, ceiling, share("gw-smtpd + gw-scan wrapper (clamd+spamd)"), share("gw-scan proxy (clamd+spamd) + gw-smtpd"), share("Postfix + amavisd-new (clamd)+SA"))
	}
	paced, hasPaced := got[pacedName]
	for _, name := range []string{"gw-smtpd + gw-scan wrapper (clamd+spamd)", "gw-scan proxy (clamd+spamd) + gw-smtpd"} {
		f, ok := got[name]
		if !ok {
			continue
		}
		verdict := "met"
		if f.ownMs > 2 {
			verdict = "not met"
		}
		fmt.Printf("  %s: gw's own CPU %.2f ms a scanned message (goal ≤ 2 ms: %s)", name, f.ownMs, verdict)
		for _, p := range f.progs {
			if strings.HasPrefix(p.name, "gw-scan") || strings.HasPrefix(p.name, "gw-smtpd's children") {
				fmt.Printf("; %s %.2f ms", p.name, p.ms)
			}
		}
		if hasPaced {
			fmt.Printf("; unscanned at the same rate %.2f ms, so scanning adds %.2f ms", paced.ownMs, f.ownMs-paced.ownMs)
		}
		if pf, ok := got[postfixPacedName]; ok {
			fmt.Printf("; Postfix unscanned at the same rate %.2f ms", pf.ownMs)
		}
		fmt.Println()
	}
	fmt.Printf("  this machine: a thread asleep 50 ms and woken costs %.0f µs of CPU a wake-up (the floor under every wait of every program)\n", wakeCost())
	fmt.Printf("  load at the end: %s\n", loadAvg())
}

// wakeCost is the CPU, in µs, one thread spends a sleep and wake-up of
// 50 ms: the price of every wait a program makes at a low rate, whatever
// it is written in.
func wakeCost() float64 {
	const n = 20
	ch := make(chan float64)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r0, r1 syscall.Rusage
		syscall.Getrusage(unix.RUSAGE_THREAD, &r0)
		for i := 0; i < n; i++ {
			syscall.Nanosleep(&syscall.Timespec{Nsec: 50e6}, nil)
		}
		syscall.Getrusage(unix.RUSAGE_THREAD, &r1)
		used := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
		ch <- float64(used) / 1e3 / n
	}()
	return <-ch
}

// scanPathMessage is a plain text message of about size bytes, in lines
// of 64 characters, with the fields a real one has.
func scanPathMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\nMessage-ID: <bench@example.org>\r\nDate: Wed, 2 Dec 2026 01:00:00 +0000\r\n\r\n")
	line := strings.Repeat("lorem ipsum dolor sit amet ", 3)[:62] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// scanProxySide puts gw-scan's proxy, with the control files given, in
// front of s: clients reach the proxy, which relays to s.
func scanProxySide(dir string, s *side, control map[string]string) (*side, error) {
	ctl := filepath.Join(dir, "proxy-control")
	check(os.MkdirAll(ctl, 0o755))
	control["me"] = "proxy.bench.example\n"
	for name, body := range control {
		check(os.WriteFile(filepath.Join(ctl, name), []byte(body), 0o644))
	}
	delete(control, "me")
	addr := freePort()
	cmd := exec.Command(filepath.Join(*binDir, "gw-scan"), "--control-dir", ctl, "--quarantine", filepath.Join(dir, "quarantine"),
		"proxy", "--listen", addr, "--next-hop", s.addr)
	log, _ := os.Create(filepath.Join(dir, "gw-scan-proxy.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.stop()
		return nil, err
	}
	inner := s
	stop := func() { cmd.Process.Kill(); cmd.Wait(); log.Close(); inner.stop() }
	if err := waitListening(addr, 5*time.Second); err != nil {
		stop()
		return nil, err
	}
	return &side{name: "gw", addr: addr, stop: stop, reap: inner.reap,
		pids: func() []int { return append(inner.pids(), cmd.Process.Pid) },
		progs: func() []namedPid {
			return append(inner.progs(), namedPid{"gw-scan proxy", cmd.Process.Pid})
		}}, nil
}

type pathFigure struct {
	rate          float64  // messages a second, as the clients saw them answered
	doneRate      float64  // messages a second until the last left for the sink
	ownMs, scanMs float64  // CPU milliseconds a message
	p50, p99      float64  // milliseconds
	progs         []progMs // own CPU program by program, where the side names them
}

// progMs is one program's CPU milliseconds a message.
type progMs struct {
	name     string
	ms       float64
	switches float64 // the program's threads' context switches a message
}

// measurePath sends n messages over sess sessions to s with go-smtp's
// client, timing each transaction, and counts CPU until s is idle again
// (its relaying done).
func measurePath(s *side, msg []byte, n, sess int, scannerCPU func() time.Duration) (pathFigure, error) {
	return measureCPU(s, func() time.Duration { return sideCPU(s) }, false, msg, n, sess, 0, scannerCPU)
}

// measureCPU is measurePath with the system's CPU counted by own; when
// delivered, the rate is counted until the system has gone idle (its
// last message handed to the sink), not until the last client's reply.
// A pace over 0 is the rate, messages a second, at which the sessions
// may start their messages; 0 sends as fast as the system answers.
func measureCPU(s *side, own func() time.Duration, delivered bool, msg []byte, n, sess int, pace float64, scannerCPU func() time.Duration) (pathFigure, error) {
	settleOn(own, 5*time.Second)
	own0, scan0, progs0, reaped0 := own(), scannerCPU(), progCPUs(s), reapedCPU(s)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		ferr error
		next = make(chan struct{}, n)
	)
	start := time.Now()
	if pace > 0 {
		go func() {
			for i := 0; i < n; i++ {
				time.Sleep(time.Until(start.Add(time.Duration(float64(i) / pace * float64(time.Second)))))
				next <- struct{}{}
			}
			close(next)
		}()
	} else {
		for i := 0; i < n; i++ {
			next <- struct{}{}
		}
		close(next)
	}
	var wg sync.WaitGroup
	for i := 0; i < sess; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(s.addr)
			if err == nil {
				err = c.Hello("client.example")
			}
			for err == nil {
				if _, ok := <-next; !ok {
					break
				}
				t := time.Now()
				if err = send(c, msg); err == nil {
					mu.Lock()
					lat = append(lat, time.Since(t))
					mu.Unlock()
				}
			}
			if c != nil {
				c.Quit()
			}
			if err != nil {
				mu.Lock()
				ferr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ferr != nil {
		return pathFigure{}, ferr
	}
	settleOn(own, 120*time.Second)
	done := time.Since(start) - settleQuiet
	if delivered {
		elapsed = done
	}
	f := pathFigure{rate: float64(n) / elapsed.Seconds(), doneRate: float64(n) / done.Seconds(),
		ownMs:  float64((own() - own0).Microseconds()) / 1000 / float64(n),
		scanMs: float64((scannerCPU() - scan0).Microseconds()) / 1000 / float64(n)}
	for i, p := range progCPUs(s) {
		f.progs = append(f.progs, progMs{p.name, float64((p.cpu - progs0[i].cpu).Microseconds()) / 1000 / float64(n), float64(p.switches-progs0[i].switches) / float64(n)})
	}
	if r := reapedCPU(s) - reaped0; r > 0 && f.progs != nil {
		f.progs = append(f.progs, progMs{"gw-smtpd's children (wrapper)", float64(r.Microseconds()) / 1000 / float64(n), 0})
	}
	f.p50, f.p99 = percentiles(lat)
	return f, nil
}

// reapedCPU is what the side's reaped children used (gw-smtpd's
// QMAILQUEUE programs), 0 where none are counted.
func reapedCPU(s *side) time.Duration {
	if s.reap == nil || s.reap() == 0 {
		return 0
	}
	_, _, cu, cs := procTimes(s.reap())
	return cu + cs
}

func send(c *smtp.Client, msg []byte) error {
	if err := c.Mail(benchFrom, nil); err != nil {
		return err
	}
	if err := c.Rcpt(benchTo, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// errSkipped is a figure -scanpath-only left out: no row.
var errSkipped = errors.New("skipped")

// directIf is direct for the figure named name, when it is wanted.
func directIf(name string, n, sess int, scannerCPU func() time.Duration, op func() error) (pathFigure, error) {
	if !scanPathWanted(name) {
		return pathFigure{}, errSkipped
	}
	return direct(n, sess, scannerCPU, op)
}

// direct runs op n times from sess goroutines: a scanner's own rate and
// CPU, with no mail system in front.
func direct(n, sess int, scannerCPU func() time.Duration, op func() error) (pathFigure, error) {
	scan0 := scannerCPU()
	var mu sync.Mutex
	var lat []time.Duration
	var ferr error
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < sess; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				t := time.Now()
				err := op()
				mu.Lock()
				if err != nil {
					ferr = err
				}
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ferr != nil {
		return pathFigure{}, ferr
	}
	f := pathFigure{rate: float64(n) / time.Since(start).Seconds(),
		scanMs: float64((scannerCPU() - scan0).Microseconds()) / 1000 / float64(n)}
	f.p50, f.p99 = percentiles(lat)
	return f, nil
}

func percentiles(lat []time.Duration) (p50, p99 float64) {
	if len(lat) == 0 {
		return 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}
