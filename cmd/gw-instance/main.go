// Command gw-instance creates, lists, checks and removes gw instances,
// writes their daemontools and runit service directories, routes domains
// to secondary instances over QMTP, and runs an instance in the
// foreground. See gw-instance(8).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"gw/lib/instance"
	"gw/lib/program"

	"github.com/urfave/cli/v2"
)

func main() {
	app := program.New("gw-instance", "create, check, supervise and route gw instances")
	app.Writer = os.Stdout
	app.UsageText = "gw-instance [--root DIR] command [options] arguments"
	app.Flags = []cli.Flag{&cli.StringFlag{Name: "root", Value: instance.DefaultRoot, Usage: "instances live under `DIR`"}}
	app.Commands = []*cli.Command{
		{Name: "create", Usage: "make an instance", ArgsUsage: "NAME", Flags: createFlags(), Action: create},
		{Name: "list", Usage: "each instance, its queue and its services", Action: list},
		{Name: "config", Usage: "the settings in effect, from control/ or the defaults (postconf)", ArgsUsage: "[NAME] [SETTING...]",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "set", Aliases: []string{"n"}, Usage: "only the settings a control file sets (postconf -n)"},
				&cli.BoolFlag{Name: "defaults", Aliases: []string{"d"}, Usage: "the defaults, whatever the files say (postconf -d)"},
			}, Action: config},
		{Name: "check", Usage: "lint instances (all without NAME)", ArgsUsage: "[NAME...]", Action: check},
		{Name: "remove", Usage: "delete an instance", ArgsUsage: "NAME",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "even with messages queued or services up"}}, Action: remove},
		{Name: "services", Usage: "rewrite the service directories from control/", ArgsUsage: "NAME", Action: each(func(in *instance.Instance, c *cli.Context) error { return in.WriteServices() })},
		{Name: "link", Usage: "link the service directories into svscan's or runsvdir's directory", ArgsUsage: "NAME DIR", Action: link(true)},
		{Name: "unlink", Usage: "remove the instance's links from DIR", ArgsUsage: "NAME DIR", Action: link(false)},
		{Name: "listen", Usage: "add or replace a listener", ArgsUsage: "NAME FACE smtp|qmtp|scan ADDRESS [DAEMON-ARGS...]",
			Flags: []cli.Flag{&cli.StringFlag{Name: "acl", Usage: "tcprules source `FILE` in acl/ (default tcp.PROTO)"}}, Action: listen},
		{Name: "unlisten", Usage: "remove a listener", ArgsUsage: "NAME FACE", Action: unlisten},
		{Name: "run", Usage: "run every daemon of the instance in the foreground", ArgsUsage: "NAME", Action: run},
		{Name: "route", Usage: "hand DOMAIN's mail to an instance or host over QMTP", ArgsUsage: "DOMAIN INSTANCE|HOST:PORT",
			Flags: []cli.Flag{fromFlag(), &cli.StringFlag{Name: "listen", Usage: "the secondary's QMTP `ADDRESS` if it has none yet"}}, Action: route},
		{Name: "unroute", Usage: "undo route", ArgsUsage: "DOMAIN", Flags: []cli.Flag{fromFlag()}, Action: unroute},
		{Name: "scan", Usage: "gw-scan before the queue of the SMTP faces named (all without FACE), or --off", ArgsUsage: "NAME [FACE...]",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "off", Usage: "no face scanned"}}, Action: scan},
		{Name: "bounce", Usage: "send NAME's bounces to the queue of BOUNCE (made if missing)", ArgsUsage: "NAME BOUNCE|--off",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "off", Usage: "bounces go back into NAME's own queue"}}, Action: bounce},
	}
	os.Args = flagsFirst(app, os.Args)
	program.Run(app)
}

// flagsFirst moves a command's options in front of its arguments, so that
// "create main --smtp 127.0.0.1:25" works as well as the order urfave/cli
// wants. An argument "--" ends the options, as usual.
func flagsFirst(app *cli.App, argv []string) []string {
	for i := 1; i < len(argv); i++ {
		cmd := app.Command(argv[i])
		if cmd == nil {
			if !strings.HasPrefix(argv[i], "-") {
				return argv
			}
			if argv[i] == "--root" {
				i++
			}
			continue
		}
		takesValue := map[string]bool{}
		for _, f := range cmd.Flags {
			if _, isBool := f.(*cli.BoolFlag); !isBool {
				for _, n := range f.Names() {
					takesValue["--"+n], takesValue["-"+n] = true, true
				}
			}
		}
		var opts, rest []string
		tail := argv[i+1:]
		for j := 0; j < len(tail); j++ {
			a := tail[j]
			switch {
			case a == "--":
				rest = append(rest, tail[j+1:]...)
				j = len(tail)
			case strings.HasPrefix(a, "-") && len(a) > 1:
				opts = append(opts, a)
				if takesValue[a] && j+1 < len(tail) {
					opts = append(opts, tail[j+1])
					j++
				}
			default:
				rest = append(rest, a)
			}
		}
		out := append(append(append([]string{}, argv[:i+1]...), opts...), "--")
		return append(out, rest...)
	}
	return argv
}

func fromFlag() cli.Flag {
	return &cli.StringFlag{Name: "from", Value: "main", Usage: "the primary `INSTANCE`"}
}

func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "smtp", Usage: "SMTP listener `ADDRESS` (host:port), repeatable"},
		&cli.StringSliceFlag{Name: "qmtp", Usage: "QMTP listener `ADDRESS`, repeatable"},
		&cli.StringFlag{Name: "me", Usage: "control/me: the instance's `NAME` (default: this host's name)"},
		&cli.StringSliceFlag{Name: "rcpthosts", Usage: "accepted `DOMAIN`, repeatable (default: me)"},
		&cli.StringSliceFlag{Name: "relay", Usage: "tcprules `PREFIX` that may relay, repeatable (default 127.)"},
		&cli.StringFlag{Name: "smarthost", Usage: "send all mail to `HOST[:PORT]` (smtproutes)"},
		&cli.StringSliceFlag{Name: "user", Usage: "`ROLE:USER`: queue, smtpd, qmtpd or log; repeatable"},
		&cli.StringFlag{Name: "supervisor", Value: "runit", Usage: "`KIND` of service directories: runit or daemontools"},
		&cli.StringFlag{Name: "bin-dir", Usage: "`DIR` where the gw programs are (default: gw-instance's own directory)"},
		&cli.StringSliceFlag{Name: "env", Usage: "`KEY=VALUE` for every daemon, repeatable"},
		&cli.BoolFlag{Name: "exist", Usage: "reuse an existing instance: write only what is missing"},
		&cli.BoolFlag{Name: "scan", Usage: "check the SMTP listeners' mail with gw-scan before the queue (control/scan)"},
	}
}

func options(c *cli.Context) (instance.Options, error) {
	users, err := instance.ParseUsers(c.StringSlice("user"))
	o := instance.Options{Me: c.String("me"), RcptHosts: c.StringSlice("rcpthosts"), Relay: c.StringSlice("relay"),
		SMTP: c.StringSlice("smtp"), QMTP: c.StringSlice("qmtp"), Smarthost: c.String("smarthost"), Users: users,
		Flavour: c.String("supervisor"), BinDir: c.String("bin-dir"), Env: c.StringSlice("env"), Exist: c.Bool("exist"), Scan: c.Bool("scan")}
	if o.BinDir == "" {
		if exe, err := os.Executable(); err == nil {
			o.BinDir = filepath.Dir(exe)
		}
	}
	return o, err
}

// fail maps lib errors to exit codes: bad input 100, the rest 111.
func fail(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, instance.ErrUsage) {
		return program.Fail(program.ExitPermanent, "%s", strings.TrimPrefix(err.Error(), "usage: "))
	}
	return program.Fail(program.ExitTemporary, "%v", err)
}

func args(c *cli.Context, min, max int) error {
	if c.NArg() < min || max >= 0 && c.NArg() > max {
		return program.Fail(program.ExitPermanent, "usage: gw-instance %s %s", c.Command.Name, c.Command.ArgsUsage)
	}
	return nil
}

func open(c *cli.Context, name string) (*instance.Instance, error) {
	in, err := instance.Open(c.String("root"), name)
	return in, fail(err)
}

func each(f func(*instance.Instance, *cli.Context) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		in, err := open(c, c.Args().First())
		if err != nil {
			return err
		}
		return fail(f(in, c))
	}
}

func create(c *cli.Context) error {
	if err := args(c, 1, 1); err != nil {
		return err
	}
	o, err := options(c)
	if err != nil {
		return fail(err)
	}
	in, err := instance.Create(c.String("root"), c.Args().First(), o)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "%s\n", in.Dir())
	return nil
}

func list(c *cli.Context) error {
	root := c.String("root")
	names, err := instance.Names(root)
	if err != nil {
		return fail(err)
	}
	for _, n := range names {
		in, err := instance.Open(root, n)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(c.App.Writer, instance.Describe(in))
	}
	return nil
}

func check(c *cli.Context) error {
	names := c.Args().Slice()
	if len(names) == 0 {
		var err error
		if names, err = instance.Names(c.String("root")); err != nil {
			return fail(err)
		}
	}
	bad := 0
	for _, n := range names {
		in, err := open(c, n)
		if err != nil {
			return err
		}
		for _, p := range in.Check() {
			fmt.Fprintf(c.App.ErrWriter, "gw-instance: %s: %s\n", n, p)
			bad++
		}
	}
	if bad > 0 {
		return program.Fail(program.ExitPermanent, "%s", plural(bad, "problem"))
	}
	return nil
}

func remove(c *cli.Context) error {
	return each(func(in *instance.Instance, c *cli.Context) error { return in.Remove(c.Bool("force")) })(c)
}

func link(on bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := args(c, 2, 2); err != nil {
			return err
		}
		in, err := open(c, c.Args().Get(0))
		if err != nil {
			return err
		}
		do := in.Link
		if !on {
			do = in.Unlink
		}
		paths, err := do(c.Args().Get(1))
		for _, p := range paths {
			fmt.Fprintln(c.App.Writer, p)
		}
		return fail(err)
	}
}

func listen(c *cli.Context) error {
	if err := args(c, 4, -1); err != nil {
		return err
	}
	in, err := open(c, c.Args().Get(0))
	if err != nil {
		return err
	}
	a := c.Args().Slice()
	return fail(in.AddListener(instance.Listener{Face: a[1], Proto: a[2], Addr: a[3], ACL: c.String("acl"), Args: a[4:]}))
}

func unlisten(c *cli.Context) error {
	if err := args(c, 2, 2); err != nil {
		return err
	}
	in, err := open(c, c.Args().Get(0))
	if err != nil {
		return err
	}
	return fail(in.RemoveListener(c.Args().Get(1)))
}

func run(c *cli.Context) error {
	if err := args(c, 1, 1); err != nil {
		return err
	}
	in, err := open(c, c.Args().First())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return fail(in.Run(ctx, os.Stdout))
}

func route(c *cli.Context) error {
	if err := args(c, 2, 2); err != nil {
		return err
	}
	in, err := open(c, c.String("from"))
	if err != nil {
		return err
	}
	line, err := in.Route(c.Args().Get(0), c.Args().Get(1), instance.RouteOptions{Listen: c.String("listen")})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "%s: qmtproutes %s\n", in.Name, line)
	return nil
}

func unroute(c *cli.Context) error {
	if err := args(c, 1, 1); err != nil {
		return err
	}
	in, err := open(c, c.String("from"))
	if err != nil {
		return err
	}
	_, err = in.Unroute(c.Args().First())
	return fail(err)
}

func scan(c *cli.Context) error {
	if err := args(c, 1, -1); err != nil {
		return err
	}
	in, err := open(c, c.Args().First())
	if err != nil {
		return err
	}
	if err := in.SetScan(c.Args().Tail(), c.Bool("off")); err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "gw-instance: restart %s's smtpd services for the change to take effect\n", in.Name)
	return nil
}

func bounce(c *cli.Context) error {
	if err := args(c, 1, 2); err != nil {
		return err
	}
	in, err := open(c, c.Args().First())
	if err != nil {
		return err
	}
	target := c.Args().Get(1)
	if c.Bool("off") == (target != "") {
		return program.Fail(program.ExitPermanent, "usage: gw-instance bounce NAME BOUNCE, or NAME --off")
	}
	_, err = in.SetBounceInstance(target)
	return fail(err)
}
