// Package runtimetune sets the Go runtime of a long-running gw daemon
// (gw-queued, gw-send, a listening gw-smtpd or gw-qmtpd, gw-scan proxy)
// so that it is cheap a message both at a few messages a second and at
// its highest rate:
//
//   - the runtime's system monitor is kept from its deep sleep
//     (GODEBUG schedtrace, sysmon.go), so that a daemon that goes idle
//     and busy again at every message does not pay the monitor's
//     20 µs polls after each wake-up;
//   - the daemon runs one processor (GOMAXPROCS 1) while one CPU is
//     enough for it and all of the CPUs the runtime would give it while
//     it needs more (procs.go): with two, every goroutine readied at
//     a few messages a second woke a second, spinning thread.
//
// Measured on the scanned path (gw-scan proxy, gw-smtpd, gw-queued,
// gw-send; go run ./tests/bench -only scanpath -scanpath-pace N), their
// CPU a message: at 10 messages a second 4.20 ms before, 3.47 with both
// (4.20 with one processor alone); at 100 a second 2.27 before, 1.58
// with both. The monitor kept awake costs an idle daemon 100 wake-ups
// and 1 to 1.5 ms of CPU a second, which at one message a second is most
// of its cost (9.8 and 15.8 ms a message against 4.0 and 7.8 without
// it, two runs): spent while the machine has CPU to spare, to save it
// when the messages come. At 10 a second gw-send and gw-scan proxy gain
// most from it (0.2 to 0.4 ms a message each), gw-queued and gw-smtpd
// next to nothing; at 100 a second all four, 0.08 to 0.16 ms.
//
// A GOMAXPROCS or a GODEBUG schedtrace in the environment is the
// sysadmin's and wins: the daemon then runs as it says.
package runtimetune

import (
	"os"

	"gw/lib/logline"
)

// Daemon tunes the runtime of the daemon it is called from; it is the
// first thing its main does once it knows it will run for long (under
// tcpserver a listener lives one session and leaves the runtime as it
// is). It may start the program again, in the same process, and does
// not return then; a failure to is logged and the daemon runs on as it
// is.
func Daemon(log *logline.Logger) {
	if err := stayAwake(); err != nil {
		log.Warning("runtime", "err", err)
	}
	if g := newGovernor(os.Getenv); g != nil {
		go g.run(log)
	}
}
