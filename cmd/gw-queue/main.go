// Command gw-queue puts one message into a gw queue with qmail-queue's
// interface: the message on fd 0, then the envelope on fd 1, and an exit
// code that is 0 only once the message is durable. See gw-queue(8).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/inject"
	"gw/lib/logline"
	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/qq"
	"gw/lib/queue"
)

// defaultQueue is the queue used when GW_QUEUE is not set, and the only
// one a setuid or setgid gw-queue uses. A build for another layout sets
// it: go build -ldflags "-X main.defaultQueue=/path/to/queue".
var defaultQueue = "/var/gw/main/queue"

// init wires the main goroutine, which does all of gw-queue's work, to
// the process's first thread: a one-shot program gains nothing from
// moving it, and its commit protocol then runs as one ordered sequence of
// system calls on one thread, which is what strace's per-thread counts
// (the kill tests) and a reader of an strace log expect.
func init() { runtime.LockOSThread() }

func main() {
	app := program.New("gw-queue", "put a message into a gw queue (qmail-queue's interface)")
	app.HideHelp = false
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "init", Usage: "create the queue `DIR` and exit (idempotent)"},
	}
	app.Action = func(c *cli.Context) error {
		if dir := c.String("init"); dir != "" {
			if privilege.Secure() {
				return program.Fail(program.ExitPermanent, "gw-queue --init is refused when gw-queue runs setuid or setgid")
			}
			if err := queue.Init(dir); err != nil {
				return program.Fail(program.ExitTemporary, "unable to create queue %s: %v", dir, err)
			}
			return nil
		}
		if c.NArg() > 0 {
			return program.Fail(program.ExitPermanent, "usage: gw-queue takes no arguments")
		}
		os.Exit(run())
		return nil
	}
	program.Run(app)
}

// queueDir returns the queue to inject into: GW_QUEUE, or the compiled-in
// default. A setuid or setgid gw-queue runs for a caller it must not trust,
// so it takes no path from the environment: a GW_QUEUE naming another
// directory is refused, never followed (a queue the caller made could hold
// links into the real one).
func queueDir() (string, error) {
	env := os.Getenv("GW_QUEUE")
	if privilege.Secure() {
		if env != "" && filepath.Clean(env) != filepath.Clean(defaultQueue) {
			return "", fmt.Errorf("GW_QUEUE=%s refused: a setuid or setgid gw-queue uses only %s", env, defaultQueue)
		}
		return defaultQueue, nil
	}
	if env == "" {
		return defaultQueue, nil
	}
	return env, nil
}

// run is qmail-queue: it never writes to fd 1 (the envelope pipe) and logs
// one line to stderr for each outcome. The queue id goes to the caller
// only on the descriptor GW_QIDFD names, when it names one.
func run() int {
	log := logline.Stderr
	// qmail-queue's alarm: an injection that takes a day is given up; what
	// it leaves the runner removes after queue.Ossified.
	time.AfterFunc(queue.DeathAfter, func() {
		log.Warning("timeout", "after", queue.DeathAfter)
		os.Exit(qq.Timeout)
	})
	dir, err := queueDir()
	if err != nil {
		log.Warning("refused", "code", qq.HomeTrouble, "err", err)
		return qq.HomeTrouble
	}
	// Run by root, it injects as the queue's owner, as a setuid gw-queue
	// would: the runner refuses files of any other owner.
	if _, _, err := privilege.BecomeOwnerOf(dir); err != nil {
		log.Warning("refused", "code", qq.HomeTrouble, "queue", dir, "err", err)
		return qq.HomeTrouble
	}
	q, err := queue.Open(dir)
	if err != nil {
		log.Warning("refused", "code", qq.HomeTrouble, "queue", dir, "err", err)
		return qq.HomeTrouble
	}
	for _, a := range q.TakeSetAside() {
		log.Warning("setaside", "file", a.File, "to", a.To, "reason", a.Reason)
	}
	uid, pid := uint32(os.Getuid()), uint32(os.Getpid())
	id, err := inject.Stream(q, uid, pid, inject.Trace("gw-queue", pid, uid, time.Now()), os.Stdin, os.Stdout)
	if err != nil {
		code := inject.Code(err)
		if inject.Abandoned(err) {
			// gw-smtpd does this to a message it refuses at the dot:
			// the same event gw-queued logs as aborted, not a warning.
			log.Info("aborted", "uid", uid, "reason", err)
			return code
		}
		log.Warning("refused", "code", code, "reply", qq.Reply(code), "err", err)
		return code
	}
	log.Info("queued", "qid", id, "uid", uid)
	inject.TellQID(os.Getenv, id.String())
	return qq.OK
}
