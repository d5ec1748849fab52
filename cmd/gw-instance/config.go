package main

import (
	"fmt"

	"gw/lib/control"
	"gw/lib/program"

	"github.com/urfave/cli/v2"
)

// config prints the settings of an instance as its programs read them,
// one "name = value" a line, in name order: the value of each control
// file, or the default a missing file means. NAME defaults to main; a
// first argument that is a registered setting is taken as a setting, not
// an instance, so that "config databytes" works as postconf's does.
func config(c *cli.Context) error {
	a := c.Args().Slice()
	name := "main"
	if len(a) > 0 {
		if _, isSetting := control.Lookup(a[0]); !isSetting {
			name, a = a[0], a[1:]
		}
	}
	for _, s := range a {
		if _, ok := control.Lookup(s); !ok {
			return program.Fail(program.ExitPermanent, "usage: %q is no setting of gw's (see gw-control(5))", s)
		}
	}
	if c.Bool("set") && c.Bool("defaults") {
		return program.Fail(program.ExitPermanent, "usage: --set and --defaults exclude each other")
	}
	var settings []control.Setting
	if c.Bool("defaults") {
		for _, f := range control.Registry {
			settings = append(settings, control.Setting{File: f, Value: f.Default})
		}
	} else {
		in, err := open(c, name)
		if err != nil {
			return err
		}
		if settings, err = control.Dir(in.Control()).Settings(); err != nil {
			return program.Fail(program.ExitTemporary, "%v", err)
		}
	}
	want := map[string]bool{}
	for _, s := range a {
		want[s] = true
	}
	for _, s := range settings {
		if len(want) > 0 && !want[s.Name] || c.Bool("set") && !s.Set {
			continue
		}
		fmt.Fprintf(c.App.Writer, "%s = %s\n", s.Name, s.Value)
	}
	return nil
}

// plural returns "1 problem" or "n problems".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
