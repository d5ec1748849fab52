// Command gw-dmarc sends DMARC aggregate reports (RFC 7489 §7.2): run
// daily, it turns the results gw-smtpd recorded in state/smtpd/dmarc.db for the
// days before today into one gzip XML report a domain and mails it
// through the instance's own queue to the domain's rua addresses. See
// gw-dmarc(8).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/control"
	"gw/lib/dmarcreport"
	"gw/lib/dns"
	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/logline"
	"gw/lib/program"
	"gw/lib/qq"
)

// minEvery bounds --every from below: a report run asks DNS for every
// destination, and a typing slip (1s for 1d) must not make that a loop.
const minEvery = time.Minute

func main() {
	var controlDir, stateDir, db string
	var every time.Duration
	app := program.New("gw-dmarc", "send DMARC aggregate reports")
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "the instance's control `DIR`", Value: "/var/gw/main/control", Destination: &controlDir},
		&cli.StringFlag{Name: "state-dir", Usage: "the instance's state `DIR`, where dmarc.db is", Value: "/var/gw/main/state/smtpd", Destination: &stateDir},
		&cli.StringFlag{Name: "db", Usage: "the bbolt `FILE` gw-smtpd records into (default: dmarc.db in the state directory)", Destination: &db},
	}
	app.Commands = []*cli.Command{
		{Name: "report", Usage: "mail the reports of the days before today",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "every", Usage: "stay running, a supervised service: report now and again each `DURATION` (24h)", Destination: &every},
			},
			Action: func(c *cli.Context) error {
				if db == "" {
					db = filepath.Join(stateDir, "dmarc.db")
				}
				if c.IsSet("every") {
					if every < minEvery {
						return program.Fail(program.ExitPermanent, "usage: --every %v: at least %v", every, minEvery)
					}
					repeat(every, func() error { return report(controlDir, db) })
				}
				return report(controlDir, db)
			}},
	}
	program.Run(app)
}

// repeat runs a report now and then once each interval, for ever: the
// service gw-instance(8) writes runs it so, as qmail's tools sleep in a
// supervised loop rather than ask cron. A run that fails is logged; what
// it could not send stays in the database for the next.
func repeat(interval time.Duration, run func() error) {
	for {
		if err := run(); err != nil {
			logline.Stderr.Log("warning", "report", "err", err)
		}
		logline.Stderr.Log("info", "sleeping", "next", time.Now().Add(interval).UTC().Format(time.RFC3339))
		time.Sleep(interval)
	}
}

func report(controlDir, db string) error {
	d := control.Dir(controlDir)
	me, err := d.LineOrMe("me", "")
	if err != nil || me == "" {
		return program.Fail(program.ExitTemporary, "control/me: %v", orMissing(err))
	}
	from, _, err := d.Line("dmarcreportfrom")
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	if from == "" {
		from = "postmaster@" + me
	}
	store, err := dmarcreport.Open(db)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	defer store.Close()
	now := time.Now()
	due, err := store.Due(now)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	rp := dmarcreport.Reporter{Org: me, Email: from}
	r := dns.FromEnv()
	inj := handoff.Select(os.Getenv)
	failed := 0
	for _, p := range due {
		if !sendPeriod(store, rp, r, inj, p, now) {
			failed++
		}
	}
	if failed > 0 {
		return program.Fail(program.ExitTemporary, "%d of %d reports kept for the next run", failed, len(due))
	}
	return nil
}

// sendPeriod mails one period's report to each destination and forgets
// the period once every destination was either sent to or refused for
// good; a destination that could not be checked or queued keeps it.
func sendPeriod(store *dmarcreport.Store, rp dmarcreport.Reporter, r *dns.Resolver, inj handoff.Injector, p dmarcreport.Period, now time.Time) bool {
	day := p.Day.Format("2006-01-02")
	rows, err := store.Rows(p)
	if err != nil {
		logline.Stderr.Log("warning", "report", "domain", p.Domain, "day", day, "err", err)
		return false
	}
	rep, err := rp.Build(p, rows)
	if err != nil {
		logline.Stderr.Log("warning", "report", "domain", p.Domain, "day", day, "err", err)
		return false
	}
	keep := false
	for _, dest := range dmarcreport.Destinations(context.Background(), r, p.Domain, rep.RUA) {
		msg := rp.Message(rep, p.Domain, dest.Address, now)
		switch {
		case dest.Retry:
			keep = true
			logline.Stderr.Log("warning", "report", "domain", p.Domain, "day", day, "to", dest.Address, "result", "later", "reason", dest.Refused)
		case dest.Refused != "":
			logline.Stderr.Log("info", "report", "domain", p.Domain, "day", day, "to", dest.Address, "result", "refused", "reason", dest.Refused)
		case dest.MaxSize > 0 && int64(len(msg)) > dest.MaxSize:
			logline.Stderr.Log("info", "report", "domain", p.Domain, "day", day, "to", dest.Address, "result", "refused", "reason", "larger than the address takes", "size", len(msg))
		default:
			if err := queue(inj, rp.Email, dest.Address, msg); err != nil {
				keep = true
				logline.Stderr.Log("warning", "report", "domain", p.Domain, "day", day, "to", dest.Address, "result", "later", "err", err)
				continue
			}
			logline.Stderr.Log("info", "report", "domain", p.Domain, "day", day, "to", dest.Address, "result", "queued", "id", rep.ID, "size", len(msg))
		}
	}
	if keep {
		return false
	}
	if err := store.Done(p); err != nil {
		logline.Stderr.Log("warning", "report", "domain", p.Domain, "day", day, "err", err)
		return false
	}
	return true
}

// queue hands one report to the instance's injector.
func queue(inj handoff.Injector, from, to string, msg []byte) error {
	tx, err := inj.Begin(envelope.Envelope{Sender: from, Recipients: []string{to}})
	if err != nil {
		return err
	}
	if _, err := tx.Write(msg); err != nil {
		tx.Abort()
		return err
	}
	code, err := tx.Commit()
	if code != qq.OK {
		return fmt.Errorf("injector exit %d: %v", code, err)
	}
	return nil
}

func orMissing(err error) error {
	if err == nil {
		return fmt.Errorf("missing")
	}
	return err
}
