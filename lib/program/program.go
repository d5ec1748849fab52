// Package program wires a gw command line: the urfave/cli/v2 application
// every cmd/ main builds on, with gw's conventions for version, usage
// errors, diagnostics on stderr and exit codes.
//
// The conventions are the qmail and ucspi-tcp ones: 0 done, 100 bad usage or
// bad input (permanent), 111 system trouble (temporary), and a program's own
// codes where it has an interface to keep (gw-queue keeps qmail-queue's).
// Diagnostics read "gw-x: fatal: reason" on stderr, never on stdout: under
// tcpserver stdout is the client and for gw-queue it is the envelope pipe.
package program

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X gw/lib/program.Version=…".
var Version = "dev"

// Exit codes shared by gw's tools (not by gw-queue, which keeps qmail-queue's).
const (
	ExitOK        = 0
	ExitPermanent = 100 // bad usage or bad input: retrying will not help
	ExitTemporary = 111 // system trouble: retrying may help
)

// Fail returns an error that makes the program print "name: fatal: msg" and
// exit with code.
func Fail(code int, format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), code)
}

// New returns an application named name whose usage line is usage. Its
// writers are stderr, its usage errors exit 100, any error that carries no
// code exits 111 and every error is printed as "name: fatal: reason".
func New(name, usage string) *cli.App {
	app := cli.NewApp()
	app.Name = name
	app.Usage = usage
	app.Version = Version
	app.HideHelpCommand = true
	app.Writer = os.Stderr
	app.ErrWriter = os.Stderr
	app.OnUsageError = func(c *cli.Context, err error, isSubcommand bool) error {
		return cli.Exit("usage: "+asTyped(err.Error(), os.Args[1:]), ExitPermanent)
	}
	app.ExitErrHandler = func(c *cli.Context, err error) {
		os.Exit(Report(c.App.ErrWriter, name, err))
	}
	return app
}

// Report prints err as name's fatal diagnostic on w and returns the exit code
// it carries: its own if it has one, 111 otherwise, 0 for no error.
func Report(w io.Writer, name string, err error) int {
	if err == nil {
		return ExitOK
	}
	code := ExitTemporary
	var coder cli.ExitCoder
	if errors.As(err, &coder) {
		code = coder.ExitCode()
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(w, "%s: fatal: %s\n", name, msg)
	}
	return code
}

// Run runs app with os.Args and exits with the code its result carries.
func Run(app *cli.App) {
	usageErrors(app.Commands, app.OnUsageError)
	err := app.Run(os.Args)
	os.Exit(Report(app.ErrWriter, app.Name, err))
}

// flagInError finds the option Go's flag package names in its errors,
// always with one dash: "flag provided but not defined: -bogus".
var flagInError = regexp.MustCompile(`^(?:flag provided but not defined: |flag needs an argument: |invalid value "[^"]*" for flag |invalid boolean value "[^"]*" for )-([A-Za-z0-9][A-Za-z0-9_-]*)`)

// asTyped rewrites the option in a flag error as the user typed it
// (--bogus, not -bogus), found among args, so that the message names what
// is on the command line.
func asTyped(msg string, args []string) string {
	m := flagInError.FindStringSubmatchIndex(msg)
	if m == nil {
		return msg
	}
	name := msg[m[2]:m[3]]
	for _, a := range args {
		if a == "--" {
			break
		}
		opt, _, _ := strings.Cut(a, "=")
		if opt == "--"+name || opt == "-"+name {
			return msg[:m[2]-1] + opt + msg[m[3]:]
		}
	}
	return msg
}

// usageErrors gives every command the application's handling of usage
// errors, so that "prog command --bogus" is reported, and exits, as
// "prog --bogus" is.
func usageErrors(cmds []*cli.Command, f cli.OnUsageErrorFunc) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = f
		}
		usageErrors(c.Subcommands, f)
	}
}
