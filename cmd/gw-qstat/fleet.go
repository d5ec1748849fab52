package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/program"
	"gw/lib/qstat"
)

// fleetCommand shows several hosts' queues from their gw-qstat --json
// files: the summary (totals, then a host at a time), or with --shape
// one qshape table for the whole fleet followed by one a host.
func fleetCommand() *cli.Command {
	return &cli.Command{
		Name: "fleet", Usage: "summarise or shape several hosts' queues from their --json output, a file a host",
		ArgsUsage: "HOST.json...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "shape", Usage: "qshape tables: the fleet's, then each host's"},
			&cli.BoolFlag{Name: "by-sender", Usage: "with --shape, count messages by sender domain"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return program.Fail(program.ExitPermanent, "usage: gw-qstat fleet [--shape] HOST.json...")
			}
			var reps []qstat.Report
			var bad []error
			for _, path := range c.Args().Slice() {
				f, err := os.Open(path)
				if err != nil {
					r := qstat.Report{Source: qstat.Source{Instance: qstat.HostLabel(path)}, Err: err}
					reps, bad = append(reps, r), append(bad, err)
					continue
				}
				r := qstat.ReadFleet(qstat.HostLabel(path), f)
				f.Close()
				if r.Err != nil {
					bad = append(bad, r.Err)
				}
				reps = append(reps, r)
			}
			w := c.App.Writer
			var err error
			if c.Bool("shape") {
				by := qstat.ByRecipient
				if c.Bool("by-sender") {
					by = qstat.BySender
				}
				now := time.Now()
				if len(bad) == 0 {
					if err = qstat.FleetShape(w, reps, now, by); err == nil {
						_, err = fmt.Fprintln(w)
					}
				}
				if err == nil {
					err = qstat.Shape(w, reps, now, by)
				}
			} else {
				err = qstat.Summary(w, reps)
			}
			if err != nil {
				return program.Fail(program.ExitTemporary, "unable to write output: %v", err)
			}
			// A host left out is said, and makes the exit 111, after
			// the others were shown.
			for _, e := range bad {
				fmt.Fprintf(c.App.ErrWriter, "%s: warning: host left out: %v\n", c.App.Name, e)
			}
			if len(bad) > 0 {
				return program.Fail(program.ExitTemporary, "%d host(s) left out", len(bad))
			}
			return nil
		},
	}
}
