package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"gw/lib/logtrace"
	"gw/lib/program"
	"gw/lib/qstat"

	"github.com/urfave/cli/v2"
)

func traceCommand() *cli.Command {
	return &cli.Command{
		Name:      "trace",
		Usage:     "a message's life from the daemons' logs, in time order, by queue id, Message-ID or session",
		ArgsUsage: "QID|MESSAGE-ID|SESSION [LOGDIR...]",
		Flags:     flags(logsFlag()),
		Action:    traceMessage,
	}
}

// traceMessage prints the log lines about one message from the log
// directories named, or else from every service's log/main of the
// selected instances. Exit 100 when no line names the message; 111 when
// a log directory could not be read (the lines may be there).
func traceMessage(c *cli.Context) error {
	if c.NArg() == 0 {
		return program.Fail(program.ExitPermanent, "usage: trace needs a queue id, a Message-ID or a session")
	}
	id := c.Args().First()
	dirs, err := logDirs(c, c.Args().Slice()[1:])
	if err != nil {
		return err
	}
	got, unread := readTrace(c, dirs, id)
	for _, l := range got {
		fmt.Fprintf(c.App.Writer, "%s %s %s\n", l.Time.Format("2006-01-02 15:04:05.000000"), l.Source, l.Text)
	}
	switch {
	case unread:
		return program.Fail(program.ExitTemporary, "some logs could not be read")
	case len(got) == 0:
		return program.Fail(program.ExitPermanent, "no log line names %s", id)
	}
	return nil
}

func logsFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "logs", Usage: "read the multilog or svlogd directory `DIR` (repeat for more) instead of the instances' logs"}
}

// logDir is a log directory to read: the name its lines are shown under,
// and its instance ("" for a directory named on the command line).
type logDir struct{ label, instance string }

// logDirs returns the log directories to read: those named (args and
// --logs), else every service's log/main of the selected instances (by
// default every instance under the root), shown as "INSTANCE/SERVICE".
func logDirs(c *cli.Context, args []string) (map[string]logDir, error) {
	dirs := map[string]logDir{}
	var named []string
	if x := lookup(c, "logs"); x != nil {
		named = x.StringSlice("logs")
	}
	named = append(named, args...)
	if len(named) > 0 {
		if str(c, "queue") != "" || str(c, "instance") != "" || lookup(c, "all") != nil || str(c, "root") != "" {
			return nil, program.Fail(program.ExitPermanent, "usage: log directories exclude --queue, --root, --instance and --all")
		}
		for _, d := range named {
			dirs[d] = logDir{label: d}
		}
	} else {
		// every instance under the root unless one is named: a
		// message's hops lead from one instance to another
		sel := qstat.Selection{Root: str(c, "root"), Instance: str(c, "instance"), All: lookup(c, "all") != nil}
		if str(c, "queue") != "" {
			return nil, program.Fail(program.ExitPermanent, "usage: trace reads instances' logs, not a queue: name the log directories")
		}
		srcs, err := sel.Sources()
		if errors.Is(err, qstat.ErrUsage) {
			return nil, program.Fail(program.ExitPermanent, "%v", err)
		} else if err != nil {
			return nil, program.Fail(program.ExitTemporary, "%v", err)
		}
		for _, s := range srcs {
			// service/NAME/log/main, as gw-instance lays an instance out
			mains, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Dir), "service", "*", "log", "main"))
			for _, m := range mains {
				dirs[m] = logDir{label: s.Label() + "/" + filepath.Base(filepath.Dir(filepath.Dir(m))), instance: s.Label()}
			}
		}
		if len(dirs) == 0 {
			return nil, program.Fail(program.ExitTemporary, "no service logs under %s", sel.RootDir())
		}
	}
	return dirs, nil
}

// readTrace reads the log directories and picks the lines about id;
// unread is true when a directory could not be read (warned about).
func readTrace(c *cli.Context, dirs map[string]logDir, id string) (got []logtrace.Line, unread bool) {
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	var all []logtrace.Line
	for _, d := range names {
		l, err := logtrace.ReadDir(d, dirs[d].label)
		if err != nil {
			warn(c, fmt.Sprintf("unable to read log: %v", err))
			unread = true
		}
		for i := range l {
			l[i].Instance = dirs[d].instance
		}
		all = append(all, l...)
	}
	return logtrace.Trace(all, id), unread
}
