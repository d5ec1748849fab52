// Command gw-tcprulescheck prints what a rules database decides for the
// client described by TCPREMOTEIP, TCPREMOTEHOST and TCPREMOTEINFO, byte
// for byte as tcprulescheck prints it; --explain adds every key tried and
// the rules line that decided.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"gw/lib/acl"
	"gw/lib/program"

	"github.com/urfave/cli/v2"
)

type config struct {
	explain bool
}

func main() {
	var cfg config
	app := program.New("gw-tcprulescheck", "show what a rules database decides for a client")
	app.UsageText = "gw-tcprulescheck [--explain] rules.db"
	app.Flags = []cli.Flag{
		&cli.BoolFlag{Name: "explain", Usage: "list the keys tried and the rules line that decided", Destination: &cfg.explain},
	}
	app.Action = func(c *cli.Context) error { return run(c, cfg) }
	program.Run(app)
}

func run(c *cli.Context, cfg config) error {
	if c.NArg() != 1 {
		return program.Fail(program.ExitPermanent, "usage: gw-tcprulescheck rules.db")
	}
	path := c.Args().Get(0)
	r := acl.Remote{IP: "0.0.0.0"} // tcprulescheck's value when TCPREMOTEIP is unset
	if ip, ok := os.LookupEnv("TCPREMOTEIP"); ok {
		r.IP = ip
	}
	r.Host, r.HasHost = os.LookupEnv("TCPREMOTEHOST")
	r.Info, r.HasInfo = os.LookupEnv("TCPREMOTEINFO")

	db, err := acl.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return program.Fail(program.ExitTemporary, "unable to read %s: %v", path, err)
	}
	defer db.Close()
	var trace func(acl.Probe)
	if cfg.explain {
		trace = func(p acl.Probe) {
			if p.Found {
				fmt.Printf("try %s: found, line %d\n", p.Key, p.Line)
			} else {
				fmt.Printf("try %s: no rule\n", p.Key)
			}
		}
	}
	d, err := db.LookupTrace(r, trace)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read %s: %v", path, err)
	}
	fmt.Print(d.Format())
	if cfg.explain {
		fmt.Print(acl.Explain(d))
	}
	return nil
}
