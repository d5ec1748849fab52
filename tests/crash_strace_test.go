package tests

// Helpers of the crash suite: learning the syscalls of gw-queue's commit
// protocol from a dry run under strace, so that each can be made the one
// where the injector dies.

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// straceSet is the syscalls the crash suite traces and counts: every step
// of the commit protocol (create, write, flush, close, directory flush,
// trigger) and the process's exit. execve marks the start of the log.
const straceSet = "execve,openat,write,writev,fdatasync,fsync,close,rename,renameat,renameat2,exit_group"

// step is one syscall of gw-queue: the nth call of name in the whole
// process (as strace's when= counts it, if all calls come from one
// thread), on what (the file it concerns, as the queue names it).
type step struct {
	name string
	nth  int
	what string
}

func (s step) String() string { return fmt.Sprintf("%s #%d (%s)", s.name, s.nth, s.what) }

// inject returns strace's options to deliver SIGKILL on entering s: the
// kernel never runs the call, so the process dies with everything before
// it done and nothing of s.
func (s step) inject() []string {
	return []string{"-e", fmt.Sprintf("inject=%s:signal=KILL:when=%d", s.name, s.nth)}
}

// straceWrap returns the strace command line that runs a program with the
// syscalls of straceSet logged to log (fd paths shown), plus extra options.
func straceWrap(t *testing.T, log string, extra ...string) []string {
	t.Helper()
	w := []string{need(t, "strace"), "-f", "-qq", "-y", "-o", log, "-e", "trace=" + straceSet}
	return append(w, extra...)
}

// logSteps reads a strace log written with straceWrap and returns the
// syscalls the program entered, in order, whatever thread made them.
// strace counts when= per thread: gw-queue does its queue work in one
// goroutine that mostly keeps its thread, so the counts usually agree; a
// caller compares where a kill was meant with where it landed.
func logSteps(t *testing.T, log string) []step {
	t.Helper()
	steps, _ := logLanding(t, log, "")
	return steps
}

// logLanding reads a strace log like logSteps and also finds the step the
// injected kill landed on: the call named injected that the kill cut
// short (its result is "= ?"), else the last call the log shows. Other
// threads' calls may be logged after it as they die ("???(" when strace
// could no longer read which call it was); they are not steps.
func logLanding(t *testing.T, log, injected string) (steps []step, at int) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	pending := map[string]int{} // pid → its unfinished step
	at = -1
	for _, line := range strings.Split(string(b), "\n") {
		pid, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " ")
		cut := strings.HasSuffix(strings.TrimSpace(rest), "= ?")
		if strings.HasPrefix(rest, "<...") {
			if i, ok := pending[pid]; ok && cut && steps[i].name == injected {
				at = i
			}
			delete(pending, pid)
			continue
		}
		if strings.HasPrefix(rest, "+++") || strings.HasPrefix(rest, "---") || strings.HasPrefix(rest, "???") {
			continue
		}
		name, args, ok := strings.Cut(rest, "(")
		if !ok {
			continue
		}
		count[name]++
		steps = append(steps, step{name: name, nth: count[name], what: stepWhat(name, args)})
		switch {
		case strings.HasSuffix(rest, "<unfinished ...>"):
			pending[pid] = len(steps) - 1
		case cut && name == injected:
			at = len(steps) - 1
		}
	}
	if len(steps) == 0 || steps[0].name != "execve" {
		t.Fatalf("%s: no execve first: not a strace log of a program", log)
	}
	for _, i := range pending { // cut so short that no result was logged
		if at < 0 && steps[i].name == injected {
			at = i
		}
	}
	if at < 0 {
		at = len(steps) - 1
	}
	return steps, at
}

// segWrites counts the writes into the segment among steps.
func segWrites(steps []step) int {
	n := 0
	for _, s := range steps {
		if (s.name == "write" || s.name == "writev") && s.what == "segment" {
			n++
		}
	}
	return n
}

// segCommitted reports whether steps include the rename of gw-queue's
// segment from tmp/ into seg/: its commit point.
func segCommitted(steps []step) bool {
	for _, s := range steps {
		if s.what == "commit" {
			return true
		}
	}
	return false
}

// segCreated reports whether steps include the segment's creation.
func segCreated(steps []step) bool {
	for _, s := range steps {
		if s.name == "openat" && s.what == "segment" {
			return true
		}
	}
	return false
}

// stepWhat names the file a syscall concerns from its strace arguments:
// the path of openat, or the path strace -y shows after an fd.
func stepWhat(name, args string) string {
	var path string
	switch name {
	case "openat":
		_, p, _ := strings.Cut(args, "\"")
		path, _, _ = strings.Cut(p, "\"")
	case "execve", "exit_group":
		return "process"
	case "rename", "renameat", "renameat2":
		if strings.Contains(args, "/queue/tmp/") && strings.Contains(args, "/queue/seg/") {
			return "commit"
		}
		return "other"
	default:
		fd, p, ok := strings.Cut(args, "<")
		if !ok {
			return "fd " + fd
		}
		path, _, _ = strings.Cut(p, ">")
		if fd == "2" {
			return "stderr"
		}
	}
	switch {
	case strings.Contains(path, "/queue/seg/"), strings.Contains(path, "/queue/tmp/"):
		return "segment"
	case strings.HasSuffix(path, "/seg"):
		return "seg dir"
	case strings.HasSuffix(path, "/lock/trigger"):
		return "trigger"
	case strings.HasSuffix(path, "/lock/clock"):
		return "clock"
	}
	return "other"
}

// commitSteps returns the steps of the commit protocol in a dry run: from the creation of the segment (openat with O_EXCL) to the
// exit, and the index among them of the last write into the segment,
// after which the message is whole.
func commitSteps(t *testing.T, steps []step) (protocol []step, lastWrite int) {
	t.Helper()
	start := -1
	for i, s := range steps {
		if s.name == "openat" && s.what == "segment" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("dry run: gw-queue created no segment: %v", steps)
	}
	protocol = steps[start:]
	// The process ends at its first exit_group; another thread may log
	// one of its own as the process dies, a step no later run repeats.
	for i, s := range protocol {
		if s.name == "exit_group" {
			protocol = protocol[:i+1]
			break
		}
	}
	lastWrite = -1
	for i, s := range protocol {
		if s.what == "commit" {
			lastWrite = i // the message is queued once the rename ran
		}
	}
	if lastWrite < 0 {
		t.Fatalf("dry run: gw-queue never renamed its segment into seg/: %v", protocol)
	}
	return protocol, lastWrite
}
