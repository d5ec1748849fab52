package main

// gw-smtpd's CPU a message against an older build of gw (-old-bin), in
// the same run: figures from different runs on a shared machine cannot be
// compared, two builds measured turn about can. Each build runs its own
// gw-queued, gw-send and sink; only gw-smtpd's own user + system time is
// counted, so what changed in the listener is what is measured.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// oldRounds is how many times each build is measured at a size, turn
// about, so a burst of load from elsewhere falls on both.
const oldRounds = 2

func oldAgainstNew(dir string, gw *side) {
	fmt.Printf("\ngw-smtpd CPU a message, the build in %s (old) against this one (new), turn about, %d rounds, 10 sessions:\n", *oldBin, oldRounds)
	sink, stopSink, err := startSink(dir, "old")
	if err != nil {
		fmt.Println("  smtp-sink:", err)
		return
	}
	defer stopSink()
	old, err := startGWFrom(*oldBin, filepath.Join(dir, "old"), sink, nil, nil)
	if err != nil {
		fmt.Println("  the old build:", err)
		return
	}
	defer old.stop()
	fmt.Printf("%5s %5s %14s %14s %9s %9s\n", "size", "sess", "old ms/msg", "new ms/msg", "new/old", "old msg/s")
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		n := *smtpdMessages
		if size >= 100<<10 {
			n = max(n/2, 1)
		}
		var oldCPU, newCPU time.Duration
		var oldRate float64
		msgs := 0
		failed := false
		for r := 0; r < oldRounds && !failed; r++ {
			oc, of, oerr := smtpdCPU(old, size, 10, n)
			nc, _, nerr := smtpdCPU(gw, size, 10, n)
			if oerr != nil || nerr != nil {
				fmt.Printf("  %dK failed: old %v, new %v\n", size>>10, oerr, nerr)
				failed = true
				break
			}
			oldCPU, newCPU, oldRate, msgs = oldCPU+oc, newCPU+nc, oldRate+of.rate/oldRounds, msgs+n
		}
		if failed {
			continue
		}
		per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(msgs) }
		fmt.Printf("%4dK %5d %14.3f %14.3f %8.0f%% %9.0f\n", size>>10, 10, per(oldCPU), per(newCPU),
			100*newCPU.Seconds()/oldCPU.Seconds(), oldRate)
	}
	fmt.Println("  (gw-smtpd's user + system time only; new/old below 67% is a third less)")
}

// smtpdOldBench is the old-against-new figure alone (section smtpdold):
// what a change to gw-smtpd saves, without the Postfix figures around it.
func smtpdOldBench(work string) {
	if *oldBin == "" {
		fmt.Println("\nsmtpdold: no -old-bin given: skipped")
		return
	}
	if _, err := exec.LookPath("smtp-source"); err != nil {
		fmt.Println("\nsmtpdold: smtp-source is not installed (make peers): skipped")
		return
	}
	dir := filepath.Join(work, "smtpdold")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)
	sink, stopSink, err := startSink(dir, "gw")
	if err != nil {
		fmt.Println("  smtp-sink:", err)
		return
	}
	defer stopSink()
	gw, err := startGW(filepath.Join(dir, "gw"), sink)
	if err != nil {
		fmt.Println("  gw:", err)
		return
	}
	defer gw.stop()
	oldAgainstNew(dir, gw)
}

// smtpdCPU measures a figure on s and returns gw-smtpd's CPU in it.
func smtpdCPU(s *side, size, sess, n int) (time.Duration, figure, error) {
	before := progTime(s, "gw-smtpd")
	f, err := measureSide(s, size, sess, n)
	return progTime(s, "gw-smtpd") - before, f, err
}

// progTime is the CPU time of the side's program called name.
func progTime(s *side, name string) time.Duration {
	for _, p := range progCPUs(s) {
		if p.name == name {
			return p.cpu
		}
	}
	return 0
}

// knowsFlag tells whether a program's --help lists flag.
func knowsFlag(prog, flag string) bool {
	out, _ := exec.Command(prog, "--help").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(strings.ReplaceAll(l, ",", " ")) {
			if f == flag {
				return true
			}
		}
	}
	return false
}
