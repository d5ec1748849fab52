package listener

import (
	"testing"

	"github.com/urfave/cli/v2"
)

// parse runs args through Flags as a listener's main would.
func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	var o Options
	cli.HelpFlag = &cli.BoolFlag{Name: "help"} // -h is tcpserver's, as in the mains
	app := &cli.App{Flags: o.Flags(100), Action: func(*cli.Context) error { return nil }}
	if err := app.Run(append([]string{"gw-test"}, args...)); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &o
}

// TestFlagsAsTcpserver: tcpserver's letters set what its options would,
// -H wins over -h, and --user without --listen is refused.
func TestFlagsAsTcpserver(t *testing.T) {
	o := parse(t)
	if o.Concurrency != 100 || o.PerIP != 20 || o.ControlDir != "/var/gw/main/control" || o.Hosts() == nil {
		t.Errorf("defaults: %+v, lookup %v", o.Options, o.Hosts())
	}
	if standalone, err := o.Standalone(); standalone || err != nil {
		t.Errorf("no --listen: standalone %v, %v", standalone, err)
	}
	o = parse(t, "-x", "/etc/tcp.smtp.db", "--listen", "127.0.0.1:25", "--listen", "[::1]:25", "-p", "--local-host", "mx.example")
	if o.ACL != "/etc/tcp.smtp.db" || len(o.Listen) != 2 || o.LocalHost != "mx.example" {
		t.Errorf("options: %+v", o.Options)
	}
	if h := o.Hosts(); h == nil || !h.Paranoid {
		t.Errorf("-p: lookup %+v", h)
	}
	if o := parse(t, "-h", "-H"); o.Hosts() != nil {
		t.Error("-h -H looks names up")
	}
	if _, err := parse(t, "--user", "gwd").Standalone(); err == nil {
		t.Error("--user under tcpserver accepted")
	}
}
