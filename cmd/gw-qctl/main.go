// Command gw-qctl acts on the messages of a queue: hold, release, remove,
// retry now or bounce now, by id or by selection, safely while gw-send
// runs. See gw-qctl(8).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/qctl"
	"gw/lib/qstat"
	"gw/lib/queue"
)

func main() {
	app := program.New("gw-qctl", "hold, release, remove, retry or bounce queued messages")
	app.Writer = os.Stdout
	app.UsageText = "gw-qctl --queue DIR | --instance NAME [--root DIR] [selection] hold|release|remove|retry|bounce [ID...]"
	var sel qctl.Selection
	var dir, root, inst string
	var wait time.Duration
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "the queue directory `DIR` (default $GW_QUEUE)", EnvVars: []string{"GW_QUEUE"}, Destination: &dir},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: qstat.DefaultRoot, Destination: &root},
		&cli.StringFlag{Name: "instance", Usage: "act on the queue of the instance `NAME` under the root", Destination: &inst},
		&cli.StringFlag{Name: "sender", Usage: "messages whose sender contains `TEXT`", Destination: &sel.Sender},
		&cli.StringFlag{Name: "recipient", Usage: "messages with a pending recipient containing `TEXT`", Destination: &sel.Recipient},
		&cli.StringFlag{Name: "domain", Usage: "messages with a pending recipient at `DOMAIN`", Destination: &sel.Domain},
		&cli.DurationFlag{Name: "older", Usage: "messages queued longer than `AGE` ago", Destination: &sel.Older},
		&cli.StringFlag{Name: "error", Usage: "messages whose last error contains `TEXT`", Destination: &sel.Error},
		&cli.DurationFlag{Name: "wait", Usage: "wait `DURATION` for gw-send to answer", Value: 30 * time.Second, Destination: &wait},
	}
	app.Action = func(c *cli.Context) error {
		args := c.Args().Slice()
		if len(args) == 0 || !qctl.ValidAction(args[0]) {
			return program.Fail(program.ExitPermanent, "usage: %s", app.UsageText)
		}
		if inst != "" {
			if c.IsSet("queue") && os.Getenv("GW_QUEUE") != dir {
				return program.Fail(program.ExitPermanent, "usage: --queue and --instance exclude each other")
			}
			if inst == "." || inst == ".." || filepath.Base(inst) != inst {
				return program.Fail(program.ExitPermanent, "usage: bad instance name %q", inst)
			}
			dir = filepath.Join(root, inst, "queue")
		}
		if dir == "" {
			return program.Fail(program.ExitPermanent, "usage: no queue (--queue, --instance or $GW_QUEUE)")
		}
		for _, a := range args[1:] {
			id, err := queue.ParseID(a)
			if err != nil {
				return program.Fail(program.ExitPermanent, "bad queue id %q", a)
			}
			sel.IDs = append(sel.IDs, id)
		}
		if sel.Empty() {
			return program.Fail(program.ExitPermanent, "usage: name messages by id or by a selection")
		}
		return run(c.App.Writer, dir, args[0], &sel, wait)
	}
	program.Run(app)
}

func run(w interface{ Write([]byte) (int, error) }, dir, action string, sel *qctl.Selection, wait time.Duration) error {
	// As root it acts as the queue's owner, before it opens anything
	// there: its request must be readable by gw-send, the journal it
	// may rewrite writable by gw-send, and no link the queue user
	// planted may lead it into root's files.
	if _, _, err := privilege.BecomeOwnerOf(dir); err != nil {
		return program.Fail(program.ExitTemporary, "%s: %v", dir, err)
	}
	lines, err := qctl.Do(dir, action, sel, wait, func(a queue.SetAside) {
		fmt.Fprintf(os.Stderr, "gw-qctl: warning: %s: %s set aside as %s: %s\n", dir, a.File, a.To, a.Reason)
	})
	if errors.Is(err, qctl.ErrNoAnswer) {
		return program.Fail(99, "%s: gw-send did not answer within %v", dir, wait)
	}
	if err != nil {
		return err
	}
	bad := 0
	for _, l := range lines {
		fmt.Fprintln(w, l)
		if strings.Contains(l, " error ") {
			bad++
		}
	}
	if bad > 0 {
		return program.Fail(program.ExitPermanent, "%d of %d messages not done", bad, len(lines))
	}
	return nil
}
