// Command gw-send runs one queue: it schedules, delivers over SMTP or
// LMTP, retries, bounces and removes. See gw-send(8).
package main

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/instdir"
	"gw/lib/logline"
	"gw/lib/metrics"
	"gw/lib/privilege"
	"gw/lib/program"
	"gw/lib/qstat"
	"gw/lib/queue"
	"gw/lib/runtimetune"
	"gw/lib/send"
	"gw/lib/trustpath"
)

type config struct {
	queue, control, root, instance string
	grace                          time.Duration
	explain                        bool
	metrics                        string
}

func main() {
	var c config
	app := program.New("gw-send", "deliver the messages of a gw queue")
	app.UsageText = "gw-send [--instance NAME [--root DIR]] [--queue DIR] [--control-dir DIR]\n" +
		"   gw-send [--instance NAME [--root DIR]] [--control-dir DIR] --explain ADDRESS..."
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "run the queue directory `DIR` (default ./queue)", Destination: &c.queue},
		&cli.StringFlag{Name: "control-dir", Usage: "read control files from `DIR` (default ./control)", Destination: &c.control},
		&cli.StringFlag{Name: "root", Usage: "instances live under `DIR`", Value: qstat.DefaultRoot, Destination: &c.root},
		&cli.StringFlag{Name: "instance", Usage: "run the instance `NAME` under the root", Destination: &c.instance},
		&cli.DurationFlag{Name: "stop-grace", Usage: "on SIGTERM, let deliveries run `DURATION` before aborting them",
			Value: 30 * time.Second, Destination: &c.grace},
		metrics.Flag(&c.metrics),
		&cli.BoolFlag{Name: "explain", Usage: "print where mail to each ADDRESS would go: route, MX hosts, TLS; deliver nothing",
			Destination: &c.explain},
	}
	app.Action = func(ctx *cli.Context) error {
		if err := c.paths(); err != nil {
			return program.Fail(program.ExitPermanent, "usage: %v", err)
		}
		if c.explain {
			return explain(os.Stdout, c, ctx.Args().Slice())
		}
		if ctx.NArg() > 0 {
			return program.Fail(program.ExitPermanent, "usage: unexpected argument %q (addresses go with --explain)", ctx.Args().First())
		}
		return run(c)
	}
	program.Run(app)
}

// paths fills in the queue and control directories: those given, else
// the instance's, else ./queue and ./control as a service's run script,
// started in the instance's directory, finds them.
func (c *config) paths() error {
	base := "."
	if c.instance != "" {
		d, err := instdir.Choose(c.root, c.instance)
		if err != nil {
			return err
		}
		base = d.Path()
	}
	if c.queue == "" {
		c.queue = filepath.Join(base, "queue")
	}
	if c.control == "" {
		c.control = filepath.Join(base, "control")
	}
	return nil
}

func run(c config) error {
	runtimetune.Daemon(logline.Stderr) // a daemon: see lib/runtimetune
	if err := metrics.Start("gw-send", c.metrics, logline.Stderr); err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	// Started as root (by hand), it runs as the queue's owner, as its
	// service does: a journal written as root would stop the service.
	if _, _, err := privilege.BecomeOwnerOf(c.queue); err != nil {
		return program.Fail(program.ExitTemporary, "%s: %v", c.queue, err)
	}
	// The queue says what is delivered, the control files where to: both
	// must be root's or gw-send's own user's alone.
	if err := trustpath.Dir("queue", c.queue); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	if err := trustpath.Dir("control directory", c.control); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	// The MTA-STS policies and TLS-RPT results decide how mail leaves: a
	// listener's user who could swap their directory could turn MTA-STS
	// off.
	if err := trustpath.Own("state directory", filepath.Clean(send.StateDir(c.control))); err != nil {
		return program.Fail(program.ExitTemporary, "%v (gw-instance services puts the layout right)", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGINT)
	out := make(chan send.Signal, 4)
	go func() {
		for sg := range sigs {
			switch sg {
			case syscall.SIGHUP:
				out <- send.Reload
			case syscall.SIGALRM:
				out <- send.RetryAll
			default:
				out <- send.Stop
			}
		}
	}()
	err := send.Run(send.Options{QueueDir: c.queue, ControlDir: c.control, Log: logline.Stderr,
		Signals: out, StopGrace: c.grace})
	if errors.Is(err, queue.ErrRunnerActive) {
		return program.Fail(program.ExitTemporary, "%s: %v", c.queue, err)
	}
	if errors.Is(err, queue.ErrNotQueue) {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	return err
}
