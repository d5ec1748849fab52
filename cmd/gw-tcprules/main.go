// Command gw-tcprules compiles tcprules text from stdin into the bbolt
// rules database the listeners read: gw-tcprules rules.db rules.tmp.
package main

import (
	"errors"
	"fmt"
	"os"

	"gw/lib/acl"
	"gw/lib/program"

	"github.com/urfave/cli/v2"
)

func main() {
	app := program.New("gw-tcprules", "compile tcprules text into a rules database")
	app.UsageText = "gw-tcprules rules.db rules.tmp < rules"
	app.Action = run
	program.Run(app)
}

func run(c *cli.Context) error {
	if c.NArg() != 2 {
		return program.Fail(program.ExitPermanent, "usage: gw-tcprules rules.db rules.tmp")
	}
	warn := func(msg string) {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", c.App.Name, msg)
	}
	err := acl.Build(os.Stdin, c.Args().Get(0), c.Args().Get(1), warn)
	var perr *acl.ParseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &perr):
		return program.Fail(program.ExitPermanent, "%v", err)
	default:
		return program.Fail(program.ExitTemporary, "%v", err)
	}
}
