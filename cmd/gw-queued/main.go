// Command gw-queued is gw-queue as a long-running server: listeners send
// it messages over a unix socket, and every message that arrives while a
// flush is under way shares the next one. See gw-queued(8).
package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"gw/lib/inject"
	"gw/lib/instdir"
	"gw/lib/logline"
	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/queue"
	"gw/lib/runtimetune"
	"gw/lib/trustpath"
)

func main() {
	var queueDir, socket, mode, root, inst string
	var budget int64
	app := program.New("gw-queued", "put messages into a gw queue for listeners on a unix socket")
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "the queue `DIR`", EnvVars: []string{"GW_QUEUE"},
			Value: "/var/gw/main/queue", Destination: &queueDir},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: "/var/gw", Destination: &root},
		&cli.StringFlag{Name: "instance", Usage: "serve the queue of the instance `NAME` under the root", Destination: &inst},
		&cli.StringFlag{Name: "socket", Usage: "listen on `PATH` (default: DIR/lock/inject.sock)", Destination: &socket},
		// A string read as octal, as chmod reads it: an IntFlag would take
		// "660" as decimal and show its default as 432.
		&cli.StringFlag{Name: "mode", Usage: "permissions of the socket, octal `MODE`", Value: "0660", Destination: &mode},
		&cli.Int64Flag{Name: "budget", Usage: "hold at most `BYTES` of messages in memory until their flush; others go to segments of their own",
			Value: inject.DefaultBudget, Destination: &budget},
	}
	app.Action = func(c *cli.Context) error {
		if inst != "" {
			d, err := instdir.Choose(root, inst)
			if err != nil {
				return program.Fail(program.ExitPermanent, "usage: %v", err)
			}
			if c.IsSet("queue") && os.Getenv("GW_QUEUE") != queueDir {
				return program.Fail(program.ExitPermanent, "usage: --queue and --instance exclude each other")
			}
			queueDir = d.Queue()
		}
		if socket == "" {
			socket = filepath.Join(queueDir, "lock", "inject.sock")
		}
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || m > 0o777 {
			return program.Fail(program.ExitPermanent, "usage: --mode %q: want octal permissions such as 0660", mode)
		}
		if budget <= 0 {
			return program.Fail(program.ExitPermanent, "--budget must be above 0")
		}
		return serve(queueDir, socket, os.FileMode(m), budget)
	}
	program.Run(app)
}

func serve(dir, socket string, mode os.FileMode, budget int64) error {
	log := logline.Stderr
	runtimetune.Daemon(log) // a daemon: see lib/runtimetune
	// The budget bounds the message bytes the sessions hold; a soft limit
	// of the budget and 64 MiB makes the collector give back what they let
	// go before the heap doubles, as GOGC's default alone would let it.
	// GOMEMLIMIT, when set, is the admin's and wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(budget + 64<<20)
	}
	// Started as root (by hand), it writes as the queue's owner, as its
	// service does: the runner refuses segments of any other owner.
	if _, _, err := privilege.BecomeOwnerOf(dir); err != nil {
		return program.Fail(program.ExitTemporary, "%s: %v", dir, err)
	}
	// Whoever may write the queue's directories may plant or replace
	// messages that gw-queued would commit beside its own.
	if err := trustpath.Dir("queue", dir); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	// Whoever may write the socket's directory may put a link in its
	// place between its bind and its chmod, or a socket of their own
	// that the listeners then hand their messages to.
	if err := trustpath.File("socket directory", filepath.Dir(socket)); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to open queue %s: %v", dir, err)
	}
	for _, a := range q.TakeSetAside() {
		log.Warning("setaside", "file", a.File, "to", a.To, "reason", a.Reason)
	}
	l, err := inject.Listen(socket, mode)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to listen on %s: %v", socket, err)
	}
	committer := q.NewCommitter()
	srv := &inject.Server{Queue: q, Committer: committer, Log: log, Program: "gw-queued", Budget: budget}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sig
		log.Info("stopping", "signal", s)
		l.Close()      // Serve returns once the sessions under way are done:
		srv.Shutdown() // idle ones at once, the others after their message
	}()
	log.Info("listening", "socket", socket, "queue", dir)
	err = srv.Serve(l)
	committer.Close()
	os.Remove(socket)
	if err != nil {
		return program.Fail(program.ExitTemporary, "accept: %v", err)
	}
	log.Info("stopped")
	return nil
}
