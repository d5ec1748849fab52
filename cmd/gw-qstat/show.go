package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"gw/lib/logtrace"
	"gw/lib/program"
	"gw/lib/qstat"
	"gw/lib/queue"

	"github.com/urfave/cli/v2"
)

func showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show queued messages by id: envelope, recipients' states, header and body (postcat -q)",
		ArgsUsage: "QID...",
		Flags: flags(jsonFlag(), logsFlag(),
			&cli.BoolFlag{Name: "envelope", Usage: "show the envelope and the recipients' states"},
			&cli.BoolFlag{Name: "header", Usage: "show the header"},
			&cli.BoolFlag{Name: "body", Usage: "show the body"}),
		Action: showMessages,
	}
}

// showMessages shows each message named, in the order named. An id that
// no queue holds is reported and the others are still shown; the exit is
// then 100, or 111 if a queue could not be read (the message may be
// there).
func showMessages(c *cli.Context) error {
	if c.NArg() == 0 {
		return program.Fail(program.ExitPermanent, "usage: show needs the queue id of a message (gw-qstat list shows them)")
	}
	ids := make([]queue.ID, 0, c.NArg())
	for _, a := range c.Args().Slice() {
		id, err := queue.ParseID(a)
		if err != nil {
			return program.Fail(program.ExitPermanent, "usage: %q is not a queue id: %v", a, err)
		}
		ids = append(ids, id)
	}
	parts := qstat.Parts{Envelope: lookup(c, "envelope") != nil, Header: lookup(c, "header") != nil, Body: lookup(c, "body") != nil}
	asJSON := lookup(c, "json") != nil
	if asJSON && parts != (qstat.Parts{}) {
		return program.Fail(program.ExitPermanent, "usage: --json shows the whole message; it excludes --envelope, --header and --body")
	}
	reps, errs, err := read(c)
	if err != nil {
		return err
	}
	for _, e := range errs {
		warn(c, fmt.Sprintf("unable to read queue: %v", e))
	}
	logs := map[string][]logtrace.Line{} // by queue directory: its instance's logs
	var missing error
	for _, id := range ids {
		r, m, err := qstat.Find(reps, id)
		if err != nil {
			if missing != nil {
				warn(c, err.Error())
			} else {
				missing = err // the fatal line reports the first
			}
			continue
		}
		if _, ok := logs[r.Dir]; !ok {
			logs[r.Dir] = instanceLogs(c, r.Dir)
		}
		var hist qstat.History
		if logs[r.Dir] != nil {
			hist = logtrace.Attempts(logs[r.Dir], m.ID.String())
		}
		if err := showOne(c, r, m, hist, parts, asJSON); err != nil {
			return err
		}
	}
	switch {
	case missing != nil && len(errs) > 0:
		return program.Fail(program.ExitTemporary, "%v; and a queue could not be read", missing)
	case missing != nil:
		return program.Fail(program.ExitPermanent, "%v", missing)
	}
	return nil
}

// instanceLogs reads the logs the recipients' history comes from: those
// --logs names, else the services' log/main beside the queue in dir, as
// gw-instance lays an instance out. nil when there are none; a log that
// cannot be read is warned about and its lines are left out.
func instanceLogs(c *cli.Context, dir string) []logtrace.Line {
	var dirs []string
	if x := lookup(c, "logs"); x != nil {
		dirs = x.StringSlice("logs")
	} else {
		dirs, _ = filepath.Glob(filepath.Join(filepath.Dir(dir), "service", "*", "log", "main"))
	}
	all := []logtrace.Line{}
	for _, d := range dirs {
		l, err := logtrace.ReadDirFunc(d, d, logtrace.IsDelivery)
		if err != nil {
			warn(c, fmt.Sprintf("unable to read log for the recipients' history: %v", err))
		}
		all = append(all, l...)
	}
	if len(dirs) == 0 {
		return nil
	}
	return all
}

func showOne(c *cli.Context, r qstat.Report, m *queue.Message, hist qstat.History, parts qstat.Parts, asJSON bool) error {
	content, err := qstat.OpenContent(r.Dir, m)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read message %s: %v", m.ID, err)
	}
	defer content.Close()
	if asJSON {
		err = qstat.ShowJSON(c.App.Writer, r, m, hist, content)
	} else {
		err = qstat.Show(c.App.Writer, r, m, hist, content, parts)
	}
	if errors.Is(err, queue.ErrCorrupt) {
		return program.Fail(program.ExitTemporary, "message %s: %v", m.ID, err)
	} else if err != nil {
		return program.Fail(program.ExitTemporary, "unable to show message %s: %v", m.ID, err)
	}
	return nil
}
