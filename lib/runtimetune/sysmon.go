// The runtime's system monitor (a thread of every Go program) goes into
// a deep sleep whenever all of the program's processors are idle, and
// the next system call wakes it, after which it polls every 20 µs for a
// millisecond before it slows down. A daemon that waits on its clients,
// its socket or its queue goes idle and busy again at every message: at
// 10 messages a second each of them paid 12 to 44 of those polls a
// message, with the thread switches they bring.
//
// The runtime skips the deep sleep only while a scheduler trace is on
// (GODEBUG schedtrace), and it reads GODEBUG once, at start. So the
// daemon starts itself again, as the same process, with the trace set
// to its longest interval: the monitor then backs off to one wake-up in
// 10 ms when there is nothing for it to do, as it does in a busy
// program. The trace prints one line of scheduler figures to stderr
// (the log) once the machine has been up 24.8 days, and every 24.8 days
// after.

package runtimetune

import (
	"os"
	"strings"
	"syscall"
)

// Setting is the GODEBUG setting that keeps the monitor awake: the
// longest interval the runtime accepts (a 32-bit count of milliseconds).
const Setting = "schedtrace=2147483647"

// stayAwake starts the program again, in the same process, with Setting
// added to GODEBUG, unless GODEBUG already names schedtrace (then it is
// this start, or the sysadmin's choice, and is kept). It returns only
// when nothing was to be done or the program could not be started
// again: the program then runs on as it is.
func stayAwake() error {
	env, ok := withSetting(os.Environ())
	if !ok {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}

// withSetting returns env with Setting added to GODEBUG, and whether
// there was anything to add.
func withSetting(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, isDebug := strings.CutPrefix(kv, "GODEBUG=")
		if !isDebug {
			out = append(out, kv)
			continue
		}
		if found { // a second GODEBUG: the runtime reads the first only
			continue
		}
		found = true
		for _, s := range strings.Split(v, ",") {
			if name, _, _ := strings.Cut(s, "="); strings.TrimSpace(name) == "schedtrace" {
				return env, false
			}
		}
		if v != "" {
			v += ","
		}
		out = append(out, "GODEBUG="+v+Setting)
	}
	if !found {
		out = append(out, "GODEBUG="+Setting)
	}
	return out, true
}
