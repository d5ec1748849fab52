package instance

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"gw/lib/control"
)

// qmtpRoute is one line of control/qmtproutes.
type qmtpRoute struct {
	domain string
	relay  string // host:port, as a listener address reads
	line   string
}

func (in *Instance) qmtpRoutes() ([]qmtpRoute, error) {
	lines, _, err := control.Dir(in.Control()).List("qmtproutes")
	if err != nil {
		return nil, err
	}
	var rs []qmtpRoute
	for _, l := range lines {
		r := qmtpRoute{line: l}
		var rest string
		if strings.HasPrefix(l, ":") {
			r.domain, rest = ":", l[1:]
		} else {
			d, x, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			r.domain, rest = d, x
		}
		host, port := rest, "209"
		if strings.HasPrefix(rest, "[") {
			if i := strings.Index(rest, "]"); i > 0 {
				host, port = rest[1:i], strings.TrimLeft(rest[i+1:], ":;")
			}
		} else if h, p, ok := strings.Cut(rest, ":"); ok {
			host, port = h, p
		} else if h, p, ok := strings.Cut(rest, ";"); ok {
			host, port = h, p
		}
		if port == "" {
			port = "209"
		}
		r.relay = net.JoinHostPort(host, port)
		rs = append(rs, r)
	}
	return rs, nil
}

// routeLine writes domain's qmtproutes line for relay host:port.
func routeLine(domain, relay string) string {
	h, p, _ := net.SplitHostPort(relay)
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		h = "[" + h + "]"
	}
	return domain + ":" + h + ":" + p
}

// FindByListener returns the instance under root with a QMTP listener on
// addr (host:port), or nil when none has one (another host).
func FindByListener(root, addr string) (*Instance, error) {
	names, err := Names(root)
	if err != nil {
		return nil, err
	}
	want := hostPort(addr)
	for _, n := range names {
		in, err := Open(root, n)
		if err != nil {
			continue
		}
		ls, err := in.Listeners()
		if err != nil {
			continue
		}
		for _, l := range ls {
			if l.Proto == "qmtp" && hostPort(connectAddr(l.Addr)) == want {
				return in, nil
			}
		}
	}
	return nil, nil
}

// connectAddr is where a client on this host reaches a listener on addr:
// an unspecified address is reached on loopback.
func connectAddr(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			h = "::1"
		}
	}
	return net.JoinHostPort(h, p)
}

// RouteOptions say how route reaches the secondary.
type RouteOptions struct {
	Listen string // the secondary's QMTP address when it has none yet; "" picks a free loopback port
}

// Route makes target responsible for domain, seen from the primary in:
// the primary accepts the domain (rcpthosts) and hands its mail over QMTP
// (qmtproutes); the secondary, when target names a local instance,
// accepts the domain (rcpthosts) and listens for QMTP (listeners, a
// service directory). A target that is no instance name is a host:port
// (or an address, port 209) on another host: only the primary changes.
// It returns the qmtproutes line written.
func (in *Instance) Route(domain, target string, opts RouteOptions) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.ContainsAny(domain, ": \t/@") {
		return "", usagef("bad domain %q", domain)
	}
	relay, err := in.routeTarget(domain, target, opts)
	if err != nil {
		return "", err
	}
	line := routeLine(domain, relay)
	if err := in.editList("qmtproutes", func(ls []string) []string {
		out := []string{}
		for _, l := range ls {
			if d, _, _ := strings.Cut(l, ":"); !strings.EqualFold(d, domain) {
				out = append(out, l)
			}
		}
		return append(out, line)
	}); err != nil {
		return "", err
	}
	if err := in.addRcptHost(domain); err != nil {
		return "", err
	}
	return line, nil
}

// routeTarget resolves target to the host:port the primary sends to,
// preparing a local secondary on the way.
func (in *Instance) routeTarget(domain, target string, opts RouteOptions) (string, error) {
	if validName.MatchString(target) && !strings.Contains(target, ".") {
		sec, err := Open(in.Root, target)
		if err != nil {
			return "", err
		}
		if sec.Name == in.Name {
			return "", usagef("instance %s cannot route to itself", in.Name)
		}
		return in.routeLocal(domain, sec, opts)
	}
	if ip, err := netip.ParseAddr(strings.Trim(target, "[]")); err == nil {
		return net.JoinHostPort(ip.String(), "209"), nil
	}
	h, p, err := net.SplitHostPort(target)
	if err != nil || h == "" || p == "" {
		return "", usagef("target %q: an instance name, an address, or host:port", target)
	}
	return net.JoinHostPort(h, p), nil
}

// routeLocal prepares the local secondary sec for domain and returns the
// address of its QMTP listener.
func (in *Instance) routeLocal(domain string, sec *Instance, opts RouteOptions) (string, error) {
	ls, err := sec.Listeners()
	if err != nil {
		return "", err
	}
	addr := ""
	for _, l := range ls {
		if l.Proto == "qmtp" {
			addr = l.Addr
			break
		}
	}
	if addr == "" {
		addr = opts.Listen
		if addr == "" {
			if addr, err = freeLoopbackPort(); err != nil {
				return "", err
			}
		}
		if err := sec.AddListener(Listener{Face: "qmtpd", Proto: "qmtp", Addr: addr, ACL: "tcp.qmtp"}); err != nil {
			return "", err
		}
	}
	if err := sec.addRcptHost(domain); err != nil {
		return "", err
	}
	return connectAddr(addr), nil
}

// Unroute undoes Route: it removes domain's qmtproutes line from the
// primary and, when the route led to a local instance, the domain from
// that instance's rcpthosts. The primary keeps accepting the domain; its
// mail then leaves by smtproutes or MX.
func (in *Instance) Unroute(domain string) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	rs, err := in.qmtpRoutes()
	if err != nil {
		return "", err
	}
	var found *qmtpRoute
	for i := range rs {
		if strings.EqualFold(rs[i].domain, domain) {
			found = &rs[i]
		}
	}
	if found == nil {
		return "", usagef("instance %s has no QMTP route for %s", in.Name, domain)
	}
	if err := in.editList("qmtproutes", func(ls []string) []string {
		out := []string{}
		for _, l := range ls {
			if d, _, _ := strings.Cut(l, ":"); !strings.EqualFold(d, domain) {
				out = append(out, l)
			}
		}
		return out
	}); err != nil {
		return "", err
	}
	sec, err := FindByListener(in.Root, found.relay)
	if err != nil || sec == nil {
		return "", err
	}
	return sec.Name, sec.editList("rcpthosts", func(ls []string) []string {
		out := []string{}
		for _, l := range ls {
			if !strings.EqualFold(l, domain) {
				out = append(out, l)
			}
		}
		return out
	})
}

func (in *Instance) addRcptHost(domain string) error {
	return in.editList("rcpthosts", func(ls []string) []string {
		if control.NewHosts(ls).Match(domain) {
			return ls
		}
		return append(ls, domain)
	})
}

// editList rewrites control list file name through f, keeping its
// comments at the top.
func (in *Instance) editList(name string, f func([]string) []string) error {
	path := in.Path("control", name)
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var comments, entries []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimRight(l, " \t\r")
		switch {
		case l == "":
		case strings.HasPrefix(l, "#"):
			comments = append(comments, l)
		default:
			entries = append(entries, l)
		}
	}
	entries = f(entries)
	return writeFile(path, lines(append(comments, entries...)), 0o644)
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// SetBounceInstance makes the instance's bounces go to the queue of the
// instance bounce (control/bouncequeue), creating that instance, without
// listeners and with the primary's users, supervisor, programs and
// environment, if it does not exist. An empty name turns it off.
func (in *Instance) SetBounceInstance(name string) (*Instance, error) {
	path := in.Path("control", "bouncequeue")
	if name == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		return nil, nil
	}
	if name == in.Name {
		return nil, usagef("instance %s cannot be its own bounce instance", in.Name)
	}
	b, err := Open(in.Root, name)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(in.Root, name)); !os.IsNotExist(statErr) {
			return nil, err
		}
		s, err := in.Settings()
		if err != nil {
			return nil, err
		}
		me, _, _ := control.Dir(in.Control()).Me()
		opts := Options{Me: me, Users: s.Users, Flavour: s.Flavour, BinDir: s.BinDir, Env: s.Env}
		if b, err = Create(in.Root, name, opts); err != nil {
			return nil, err
		}
	}
	if err := writeFile(path, b.Queue()+"\n", 0o644); err != nil {
		return nil, err
	}
	return b, nil
}

// String names the instance for messages.
func (in *Instance) String() string { return fmt.Sprintf("%s (%s)", in.Name, in.Dir()) }
