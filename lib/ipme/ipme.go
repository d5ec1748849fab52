// Package ipme knows which mail hosts are this gateway itself, so that
// gw-send never delivers to its own listeners by MX: a backup MX whose
// primary is down would otherwise send a message round in a loop until
// its Received lines ran out, and lose it.
//
// The gateway is a host name that is control/me, or an address and port
// it listens on. The addresses are the host's own (its interfaces' and
// control/moreipme's, less control/notipme's, and every loopback
// address); the ports are those of control/listeners, or 25 where that
// file is missing (listeners run under tcpserver, on SMTP's port). A
// listener bound to a given address is only that address and port.
package ipme

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gw/lib/control"
)

// DefaultPort is the port taken for the gateway's listeners when
// control/listeners does not name them.
const DefaultPort = 25

// Me is what the gateway knows of itself.
type Me struct {
	names   map[string]bool
	addrs   map[netip.Addr]bool     // the host's addresses, notipme left out
	not     map[netip.Addr]bool     // notipme: never this gateway
	bound   map[netip.AddrPort]bool // listeners bound to one address
	anyPort map[int]bool            // listeners bound to every address
}

// Load reads control/me, control/listeners, control/moreipme and
// control/notipme of dir, and the host's interface addresses.
func Load(dir string) (*Me, error) {
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	var own []netip.Addr
	for _, a := range ifaces {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own = append(own, p.Addr())
		}
	}
	return load(control.Dir(dir), own)
}

func load(d control.Dir, own []netip.Addr) (*Me, error) {
	m := &Me{names: map[string]bool{}, addrs: map[netip.Addr]bool{}, not: map[netip.Addr]bool{},
		bound: map[netip.AddrPort]bool{}, anyPort: map[int]bool{}}
	me, _, err := d.Me()
	if err != nil {
		return nil, err
	}
	if me = normName(me); me != "" {
		m.names[me] = true
	}
	for _, f := range []struct {
		name string
		into map[netip.Addr]bool
	}{{"moreipme", m.addrs}, {"notipme", m.not}} {
		lines, _, err := d.List(f.name)
		if err != nil {
			return nil, err
		}
		for i, l := range lines {
			a, err := netip.ParseAddr(strings.TrimSpace(l))
			if err != nil {
				return nil, fmt.Errorf("control/%s: line %d: %q is not an IP address", f.name, i+1, l)
			}
			f.into[a.Unmap()] = true
		}
	}
	for _, a := range own {
		m.addrs[a.Unmap()] = true
	}
	lines, present, err := d.List("listeners")
	if err != nil {
		return nil, err
	}
	if !present || len(lines) == 0 {
		m.anyPort[DefaultPort] = true
		return m, nil
	}
	for i, l := range lines {
		if err := m.listener(l); err != nil {
			return nil, fmt.Errorf("control/listeners: line %d: %w", i+1, err)
		}
	}
	return m, nil
}

// listener takes the address of one control/listeners line: face proto
// address [acl [args]].
func (m *Me) listener(line string) error {
	f := strings.Fields(line)
	if len(f) < 3 {
		return fmt.Errorf("want face proto address: %q", line)
	}
	host, port, err := net.SplitHostPort(f[2])
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		m.anyPort[p] = true
		return nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%q is not an IP address", host)
	}
	if a.IsUnspecified() {
		m.anyPort[p] = true
		return nil
	}
	m.bound[netip.AddrPortFrom(a.Unmap(), uint16(p))] = true
	return nil
}

// Name reports whether host name is the gateway's own (control/me).
func (m *Me) Name(name string) bool {
	return m != nil && m.names[normName(name)]
}

// Addr reports whether a connection to ap would reach the gateway's own
// listeners.
func (m *Me) Addr(ap netip.AddrPort) bool {
	if m == nil {
		return false
	}
	a := ap.Addr().Unmap()
	if m.not[a] {
		return false
	}
	if m.bound[netip.AddrPortFrom(a, ap.Port())] {
		return true
	}
	// Every loopback address, and the unspecified one, reach this host
	// whatever the interfaces list.
	mine := m.addrs[a] || a.IsLoopback() || a.IsUnspecified()
	return mine && m.anyPort[int(ap.Port())]
}

func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}
