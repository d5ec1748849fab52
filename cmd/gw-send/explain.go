package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"gw/lib/envelope"
	"gw/lib/instance"
	"gw/lib/program"
	"gw/lib/route"
	"gw/lib/send"
)

// explain prints, for each address, where gw-send would deliver it from
// this queue, as exim -bt and sendmail -bv answer: the instance, the
// route, the MX hosts with their preferences and addresses, the hosts a
// delivery would try, and the TLS it would use. It reads the control
// files and asks DNS; it opens no queue and connects to no mail host.
func explain(w io.Writer, c config, addrs []string) error {
	if len(addrs) == 0 {
		return program.Fail(program.ExitPermanent, "usage: gw-send --explain ADDRESS...")
	}
	for _, a := range addrs {
		if err := envelope.CheckAddress(a); err != nil {
			return program.Fail(program.ExitPermanent, "usage: %q: %v", a, err)
		}
	}
	cfg, err := send.ReadConfig(c.control)
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to read controls: %v", err)
	}
	res := cfg.Resolver()
	var bounce, wait []string // the addresses a delivery would fail or defer
	for i, a := range addrs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		e := send.Explain(ctx, cfg, res, a)
		cancel()
		fmt.Fprintf(w, "instance: %s\n", c.instanceName())
		if err := e.Write(w); err != nil {
			return program.Fail(program.ExitTemporary, "unable to write output: %v", err)
		}
		if e.Route.Proto == route.QMTP {
			if name := localInstance(c.root, e.Hosts); name != "" {
				fmt.Fprintf(w, "next instance: %s (its QMTP listener)\n", name)
			}
		}
		switch {
		case e.HostsErr == nil:
		case route.Permanent(e.HostsErr):
			bounce = append(bounce, a)
		default:
			wait = append(wait, a)
		}
	}
	// As sendmail -bv and exim -bt, the exit says whether every address
	// has somewhere to go, so that a script need not read the text.
	if len(bounce) > 0 {
		return program.Fail(program.ExitPermanent, "mail to %s would bounce: nowhere to deliver it", strings.Join(bounce, ", "))
	}
	if len(wait) > 0 {
		return program.Fail(program.ExitTemporary, "mail to %s would wait in the queue: its hosts cannot be found now", strings.Join(wait, ", "))
	}
	return nil
}

// instanceName names the instance whose settings are explained:
// --instance, else the directory that holds the control directory, as an
// instance lays it out.
func (c config) instanceName() string {
	if c.instance != "" {
		return c.instance
	}
	abs, err := filepath.Abs(c.control)
	if err != nil {
		return c.control
	}
	return filepath.Base(filepath.Dir(abs)) + " (control " + abs + ")"
}

// localInstance returns the instance under root whose QMTP listener is
// the first host, if any: where a QMTP route hands the mail on.
func localInstance(root string, hosts []route.Host) string {
	if len(hosts) == 0 {
		return ""
	}
	want := netip.AddrPortFrom(hosts[0].Addr, uint16(hosts[0].Port))
	names, err := instance.Names(root)
	if err != nil {
		return ""
	}
	for _, n := range names {
		in, err := instance.Open(root, n)
		if err != nil {
			continue
		}
		ls, err := in.Listeners()
		if err != nil {
			continue
		}
		for _, l := range ls {
			if ap, err := netip.ParseAddrPort(l.Addr); err == nil && l.Proto == "qmtp" && ap == want {
				return n
			}
		}
	}
	return ""
}
