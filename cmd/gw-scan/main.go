// Command gw-scan is gw's content filter: clamd, spamd and built-in MIME
// rules. Run with no command it is a $QMAILQUEUE wrapper in front of
// gw-queue; "proxy" relays SMTP from one port to the next hop after the
// scan; "quarantine" lists, shows, releases and removes held messages.
// See gw-scan(8).
package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/control"
	"gw/lib/handoff"
	"gw/lib/inject"
	"gw/lib/logline"
	"gw/lib/metrics"
	"gw/lib/program"
	"gw/lib/qq"
	"gw/lib/queue"
	"gw/lib/scan"
)

type config struct {
	controlDir, quarantine, queueProgram string
	root, instance                       string
	listen, nextHop, metrics             string
}

func main() {
	var c config
	app := program.New("gw-scan", "content filter: clamd, spamd and MIME rules, as a QMAILQUEUE wrapper or an SMTP proxy")
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR`", EnvVars: []string{"GW_CONTROL_DIR"}, Value: "/var/gw/main/control", Destination: &c.controlDir},
		&cli.StringFlag{Name: "quarantine", Usage: "hold messages in `DIR` (default: quarantine beside the control directory)", EnvVars: []string{"GW_QUARANTINE"}, Destination: &c.quarantine},
		&cli.StringFlag{Name: "queue-program", Usage: "hand scanned mail to `PROGRAM` (default: gw-queue beside gw-scan, or on PATH)", EnvVars: []string{"GW_SCAN_QUEUE"}, Destination: &c.queueProgram},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: "/var/gw", Destination: &c.root},
		&cli.StringFlag{Name: "instance", Usage: "use the control files and quarantine of the instance `NAME` under the root", Destination: &c.instance},
	}
	app.Before = c.chooseInstance
	app.Action = func(*cli.Context) error { os.Exit(wrap(&c)); return nil }
	app.Commands = []*cli.Command{
		{
			Name: "proxy", Usage: "relay SMTP to the next hop after scanning",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "listen", Usage: "listen on `HOST:PORT`", Value: "127.0.0.1:10024", Destination: &c.listen},
				&cli.StringFlag{Name: "next-hop", Usage: "relay to `HOST:PORT`", Value: "127.0.0.1:10025", Destination: &c.nextHop},
				metrics.Flag(&c.metrics),
			},
			Action: func(*cli.Context) error { return proxy(&c) },
		},
		{
			Name: "quarantine", Usage: "list, show, release or remove held messages",
			Subcommands: []*cli.Command{
				{Name: "list", Usage: "list held messages", Action: func(*cli.Context) error { return qlist(&c) }},
				{Name: "show", Usage: "print a held message", ArgsUsage: "ID", Action: func(x *cli.Context) error { return qshow(&c, x.Args().Slice()) }},
				{Name: "release", Usage: "queue held messages for their recipients", ArgsUsage: "ID...", Action: func(x *cli.Context) error { return qrelease(&c, x.Args().Slice()) }},
				{Name: "remove", Usage: "delete held messages", ArgsUsage: "ID...", Action: func(x *cli.Context) error { return qremove(&c, x.Args().Slice()) }},
			},
		},
	}
	program.Run(app)
}

// chooseInstance makes --instance NAME the control directory
// ROOT/NAME/control (and so its quarantine/ beside it), as gw-qstat,
// gw-qctl and gw-send take an instance. It wins over GW_CONTROL_DIR; a
// --control-dir on the command line beside it is bad usage.
func (c *config) chooseInstance(x *cli.Context) error {
	if c.instance == "" {
		return nil
	}
	if x.IsSet("control-dir") && c.controlDir != os.Getenv("GW_CONTROL_DIR") {
		return program.Fail(program.ExitPermanent, "usage: --instance and --control-dir exclude each other")
	}
	if c.instance == "." || c.instance == ".." || filepath.Base(c.instance) != c.instance {
		return program.Fail(program.ExitPermanent, "usage: bad instance name %q", c.instance)
	}
	c.controlDir = filepath.Join(c.root, c.instance, "control")
	return nil
}

func (c *config) quarantineDir() *scan.QuarantineDir {
	if c.quarantine != "" {
		return &scan.QuarantineDir{Dir: c.quarantine}
	}
	return &scan.QuarantineDir{Dir: filepath.Join(filepath.Dir(filepath.Clean(c.controlDir)), "quarantine")}
}

func (c *config) queue() string {
	if c.queueProgram != "" {
		return c.queueProgram
	}
	return handoff.DefaultQueue()
}

// wrap is qmail-queue's interface: it never writes to fd 1 and exits with
// qmail-queue's codes, or execs the queue program.
func wrap(c *config) int {
	log := logline.Stderr
	s, err := scan.Load(control.Dir(c.controlDir), log)
	if err != nil {
		log.Warning("refused", "code", qq.ConfigError, "err", err)
		return qq.ConfigError
	}
	// qmail-queue's alarm, as gw-queue keeps it: a caller that stalls
	// mid-message does not hold a wrapper for ever.
	time.AfterFunc(queue.DeathAfter, func() {
		log.Warning("timeout", "after", queue.DeathAfter)
		os.Exit(qq.Timeout)
	})
	w := &scan.Wrapper{Scanner: s, Quarantine: c.quarantineDir(), Plain: !handoff.TakesDSN(c.queue())}
	code, d := w.Wrap(context.Background(), os.Stdin, os.Stdout)
	if d == nil {
		return code
	}
	// The caller chose gw-queued's socket (its handoff.Select would have):
	// keep to it rather than start a gw-queue process.
	if sock := os.Getenv("GW_QUEUED"); sock != "" && c.queueProgram == "" {
		return viaSocket(sock, d)
	}
	msg, env, err := d.Files()
	if err != nil {
		log.Warning("refused", "code", qq.WriteError, "err", err)
		return qq.WriteError
	}
	err = scan.ExecQueue(c.queue(), msg, env, os.Environ())
	log.Warning("refused", "code", qq.InternalBug, "err", err)
	return qq.InternalBug
}

// viaSocket hands d to gw-queued and returns its qmail-queue code.
func viaSocket(sock string, d *scan.Delivery) int {
	log := logline.Stderr
	tx, err := handoff.PoolFor(sock).Begin(d.Env)
	if err != nil {
		log.Warning("refused", "code", qq.NetworkError, "err", err)
		return qq.NetworkError
	}
	// Straight from the spool, rewritten on the way: no copy of it.
	if err := d.WriteMessage(tx); err != nil {
		tx.Abort()
		log.Warning("refused", "code", qq.ReadError, "err", err)
		return qq.ReadError
	}
	code, err := tx.Commit()
	if err != nil {
		log.Warning("refused", "code", code, "err", err)
	}
	if code == qq.OK {
		// The caller's descriptor for it, as gw-queue would have written
		// (the exec path passes the descriptor on to gw-queue itself).
		inject.TellQID(os.Getenv, handoff.QID(tx))
	}
	return code
}
