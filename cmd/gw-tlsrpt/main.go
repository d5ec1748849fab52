// Command gw-tlsrpt mails the TLS reports (RFC 8460) of one day: the
// results gw-send recorded in the instance's state/send/tlsrpt, one report a
// policy domain, to the rua of the domain's _smtp._tls record, through
// the instance's own queue. See gw-tlsrpt(8).
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/control"
	"gw/lib/dns"
	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/logline"
	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/qstat"
	"gw/lib/queue"
	"gw/lib/tlsrpt"
	"gw/lib/trustpath"
)

type config struct {
	queue, control, root, instance, day string
}

func main() {
	var c config
	app := program.New("gw-tlsrpt", "mail a day's TLS reports (RFC 8460)")
	app.UsageText = "gw-tlsrpt [--instance NAME [--root DIR]] [--queue DIR] [--control-dir DIR] [--day YYYY-MM-DD]"
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "inject into the queue directory `DIR` (default ./queue)", Destination: &c.queue},
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR` (default ./control)", Destination: &c.control},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: qstat.DefaultRoot, Destination: &c.root},
		&cli.StringFlag{Name: "instance", Usage: "report for the instance `NAME` under the root", Destination: &c.instance},
		&cli.StringFlag{Name: "day", Usage: "report the UTC day `YYYY-MM-DD` (default yesterday)", Destination: &c.day},
	}
	app.Action = func(*cli.Context) error { return run(c) }
	program.Run(app)
}

func run(c config) error {
	base := "."
	if c.instance != "" {
		base = filepath.Join(c.root, c.instance)
	}
	if c.queue == "" {
		c.queue = filepath.Join(base, "queue")
	}
	if c.control == "" {
		c.control = filepath.Join(base, "control")
	}
	day := time.Now().UTC().Add(-24 * time.Hour)
	if c.day != "" {
		d, err := time.Parse("2006-01-02", c.day)
		if err != nil {
			return program.Fail(program.ExitPermanent, "--day %q: want YYYY-MM-DD", c.day)
		}
		day = d
	}
	if _, _, err := privilege.BecomeOwnerOf(c.queue); err != nil {
		return program.Fail(program.ExitTemporary, "%s: %v", c.queue, err)
	}
	if err := trustpath.Dir("control directory", c.control); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	d := control.Dir(c.control)
	me, ok, err := d.Me()
	if err != nil || !ok || me == "" {
		return program.Fail(program.ExitTemporary, "%s: control/me is missing", c.control)
	}
	server, _, err := d.Line("dnsserver")
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	res := dns.FromEnv()
	if server != "" {
		res = dns.New(server)
	}
	state := filepath.Join(c.control, "..", "state", "send") // gw-send's, as send.StateDir
	if err := trustpath.Own("state directory", state); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	dir := filepath.Join(state, "tlsrpt")
	return report(logline.Stderr, res, me, c.queue, dir, day)
}

// report mails the reports of day and then marks the day's file sent
// (renamed to .sent), so that a second run sends nothing twice.
func report(log *logline.Logger, res *dns.Resolver, me, queueDir, dir string, day time.Time) error {
	file := filepath.Join(dir, tlsrpt.Day(day)+".jsonl")
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("tlsrpt_none", "day", tlsrpt.Day(day))
		return nil
	}
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	results, bad, err := tlsrpt.Read(f)
	f.Close()
	if err != nil {
		return program.Fail(program.ExitTemporary, "%s: %v", file, err)
	}
	if bad > 0 {
		log.Warning("tlsrpt_bad_lines", "file", file, "lines", bad)
	}
	q, err := queue.Open(queueDir)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	defer q.Close()
	failed := false
	for domain, rep := range tlsrpt.Build(day, me, "postmaster@"+me, results) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		txts, err := res.LookupTXT(ctx, "_smtp._tls."+domain)
		cancel()
		var rua []string
		for _, t := range txts {
			if r, ok := tlsrpt.ParseRUA(t); ok {
				rua = append(rua, r...)
			}
		}
		if err != nil && !dns.NotFound(err) {
			log.Warning("tlsrpt_dns", "domain", domain, "err", err)
			failed = true
			continue
		}
		if len(rua) == 0 {
			log.Info("tlsrpt_no_rua", "domain", domain)
			continue
		}
		msg, err := tlsrpt.Message(rep, domain, "postmaster@"+me, strings.Join(rua, ", "), time.Now())
		if err != nil {
			return err
		}
		id, err := queueReport(q, msg, rua)
		if err != nil {
			log.Warning("tlsrpt_inject", "domain", domain, "err", err)
			failed = true
			continue
		}
		log.Info("tlsrpt_sent", "domain", domain, "qid", id, "to", strings.Join(rua, ","), "report_id", rep.ReportID)
	}
	if failed {
		return program.Fail(program.ExitTemporary, "some reports were not queued; the day's results are kept")
	}
	if err := os.Rename(file, file+".sent"); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	return nil
}

// queueReport injects msg, from the null sender (no report about a
// report: RFC 8460 5.3 leaves the sender free, a null one bounces to
// nobody), to rua.
func queueReport(q *queue.Queue, msg []byte, rua []string) (queue.ID, error) {
	env := envelope.Envelope{Sender: "", Recipients: rua}
	pid, uid := uint32(os.Getpid()), uint32(os.Getuid())
	id, err := inject.Stream(q, uid, pid, inject.Trace("gw-tlsrpt", pid, uid, time.Now()), bytes.NewReader(msg), bytes.NewReader(env.Wire()))
	if err != nil {
		return id, fmt.Errorf("injecting: %w", err)
	}
	q.Pull()
	return id, nil
}
