// Command gw-qstat shows what a queue holds without locking or writing it:
// qmail-qstat's summary, qmail-qread's listing, postqueue -j's JSON,
// qshape's age table and Prometheus metrics. See gw-qstat(8).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/qstat"

	"github.com/urfave/cli/v2"
)

func main() {
	app := program.New("gw-qstat", "show what gw queues hold")
	// gw-qstat's output is for the terminal and for pipes, unlike the
	// listeners' and gw-queue's fd 1.
	app.Writer = os.Stdout
	app.UsageText = "gw-qstat [selection] [--json] [list | shape | metrics | show QID...]\n   gw-qstat trace QID|MESSAGE-ID [LOGDIR...]\n   gw-qstat fleet [--shape] HOST.json..."
	app.Flags = flags(jsonFlag())
	app.Action = show(true, func(w io.Writer, reps []qstat.Report, c *cli.Context) error {
		if lookup(c, "json") != nil {
			return qstat.JSON(w, reps)
		}
		return qstat.Summary(w, reps)
	})
	app.Commands = []*cli.Command{
		{Name: "list", Usage: "list messages and recipients as qmail-qread does", Flags: flags(jsonFlag()),
			Action: show(true, func(w io.Writer, reps []qstat.Report, c *cli.Context) error {
				if lookup(c, "json") != nil {
					return qstat.JSON(w, reps)
				}
				return qstat.List(w, reps)
			})},
		{Name: "shape", Usage: "pending recipients by domain and age, as qshape shows them",
			Flags: flags(&cli.BoolFlag{Name: "by-sender", Usage: "count messages by sender domain"}),
			Action: show(false, func(w io.Writer, reps []qstat.Report, c *cli.Context) error {
				by := qstat.ByRecipient
				if lookup(c, "by-sender") != nil {
					by = qstat.BySender
				}
				return qstat.Shape(w, reps, time.Now(), by)
			})},
		{Name: "metrics", Usage: "Prometheus text format for node_exporter's textfile collector", Flags: flags(),
			Action: show(false, func(w io.Writer, reps []qstat.Report, c *cli.Context) error {
				return qstat.Metrics(w, reps, time.Now())
			})},
		fleetCommand(),
		showCommand(),
		traceCommand(),
	}
	program.Run(app)
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "one JSON object a message, a line (postqueue -j)"}
}

// flags returns the selection flags every gw program shares, plus extra.
// Each command gets its own copies so that they may come before or after
// the command name.
func flags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "read the queue directory `DIR` (default $GW_QUEUE)"},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR` (default " + qstat.DefaultRoot + ")"},
		&cli.StringFlag{Name: "instance", Usage: "read the instance `NAME` under the root"},
		&cli.BoolFlag{Name: "all", Usage: "read every instance under the root"},
	}, extra...)
}

// lookup returns the context in which the flag name was set, the command's
// own or a parent's, or nil if it was not set at all.
func lookup(c *cli.Context, name string) *cli.Context {
	for _, x := range c.Lineage() {
		for _, n := range x.LocalFlagNames() {
			if n == name {
				return x
			}
		}
	}
	return nil
}

func str(c *cli.Context, name string) string {
	if x := lookup(c, name); x != nil {
		return x.String(name)
	}
	return ""
}

// becomeOwner makes a gw-qstat started as root read as the owner of the
// queues it reads, as qmail's tools run as the queue user, when they all
// have the one owner. Queues of several owners it reads as root: it opens
// nothing there for writing, and follows no link (lib/queue).
func becomeOwner(srcs []qstat.Source) error {
	if os.Geteuid() != 0 || len(srcs) == 0 {
		return nil
	}
	owner := -1
	for _, s := range srcs {
		st, err := os.Stat(s.Dir)
		if err != nil {
			return nil // Load reports it, and reads the others
		}
		uid := int(st.Sys().(*syscall.Stat_t).Uid)
		if owner >= 0 && uid != owner {
			return nil
		}
		owner = uid
	}
	if _, _, err := privilege.BecomeOwnerOf(srcs[0].Dir); err != nil {
		return fmt.Errorf("%s: %w", srcs[0].Dir, err)
	}
	return nil
}

// read reads the selected queues and reports their problem files as
// warnings; errs holds why each queue that could not be read at all was
// not. err is bad usage or a root that cannot be listed.
func read(c *cli.Context) (reps []qstat.Report, errs []error, err error) {
	sel := qstat.Selection{Queue: str(c, "queue"), Root: str(c, "root"), Instance: str(c, "instance"),
		All: lookup(c, "all") != nil, EnvQueue: os.Getenv("GW_QUEUE")}
	srcs, err := sel.Sources()
	if errors.Is(err, qstat.ErrUsage) {
		return nil, nil, program.Fail(program.ExitPermanent, "%v", err)
	} else if err != nil {
		return nil, nil, program.Fail(program.ExitTemporary, "%v", err)
	}
	if len(srcs) == 0 {
		warn(c, "no instances under "+sel.RootDir())
	}
	if err := becomeOwner(srcs); err != nil {
		return nil, nil, program.Fail(program.ExitTemporary, "%v", err)
	}
	reps = qstat.Load(srcs)
	for _, r := range reps {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	for _, p := range qstat.Problems(reps) {
		warn(c, p)
	}
	return reps, errs, nil
}

func warn(c *cli.Context, msg string) {
	fmt.Fprintf(c.App.ErrWriter, "%s: warning: %s\n", c.App.Name, msg)
}

type format func(w io.Writer, reps []qstat.Report, c *cli.Context) error

// show reads the selected queues, reports their problem files as warnings
// and writes them in format. A queue that cannot be read at all makes the
// exit 111, after the others were shown. A --json given before a command
// without a JSON form is bad usage, not something to ignore.
func show(jsonOK bool, f format) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return program.Fail(program.ExitPermanent, "usage: unexpected argument %q", c.Args().First())
		}
		if !jsonOK && lookup(c, "json") != nil {
			return program.Fail(program.ExitPermanent, "usage: --json goes with the summary, list and show only")
		}
		reps, errs, err := read(c)
		if err != nil {
			return err
		}
		if err := f(c.App.Writer, reps, c); err != nil {
			return program.Fail(program.ExitTemporary, "unable to write output: %v", err)
		}
		for _, e := range errs[min(1, len(errs)):] {
			warn(c, fmt.Sprintf("unable to read queue: %v", e))
		}
		if len(errs) > 0 {
			return program.Fail(program.ExitTemporary, "unable to read queue: %v", errs[0])
		}
		return nil
	}
}
