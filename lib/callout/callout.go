// Package callout verifies a recipient by asking the internal host that
// owns its domain, as Postfix's reject_unverified_recipient does: connect,
// EHLO, MAIL FROM:<>, RCPT TO:<recipient>, QUIT — no message is ever sent.
// A 2xx to RCPT means the recipient exists, a 5xx that it does not; a 4xx,
// a refused MAIL, a dead host or a timeout leave it unverified, which the
// listener answers with a temporary error (never a 5xx).
//
// Which domains are verified, and where, is control/callouts, in
// smtproutes' syntax: "domain:host[:port]" asks that host; "domain:" (no
// host) asks the host smtproutes names for the domain. ".suffix" entries
// and the default ":host" entry work as in smtproutes. A domain that
// resolves to no host (MX delivery) is not verified.
//
// Answers are cached (Cache, a bbolt file): existing recipients for
// PositiveTTL, unknown ones for NegativeTTL; unverified answers are not
// cached, but a host that could not be reached is not asked again for
// hostDownFor, so a dead internal host costs each RCPT nothing rather than
// a connect timeout.
package callout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"gw/lib/control"
	"gw/lib/route"
	"gw/lib/smtpd"
)

// Defaults of the control files (seconds), documented in gw-smtpd(8).
const (
	DefaultTimeout        = 30        // callouttimeout: the whole dialogue
	DefaultConnectTimeout = 10        // calloutconnecttimeout
	DefaultPositiveTTL    = 7 * 86400 // calloutpositive: Postfix's refresh time
	DefaultNegativeTTL    = 3 * 3600  // calloutnegative: Postfix's negative refresh
	hostDownFor           = 30 * time.Second
	maxReplyLine          = 4096 // bytes of one reply line from the host
	maxReplyLines         = 100  // lines of one multi-line reply
)

// Checker verifies recipients of the domains in its table.
type Checker struct {
	Callouts   *route.Table // control/callouts
	SMTPRoutes *route.Table // control/smtproutes, for "domain:" entries
	Helo       string       // EHLO name: control/me
	Sender     string       // MAIL FROM of the probe; "" is <>

	Timeout, ConnectTimeout  time.Duration
	PositiveTTL, NegativeTTL time.Duration
	Cache                    *Cache // nil: every RCPT asks the host
	Now                      func() time.Time
	// Dial connects to a host; nil is a net.Dialer with ConnectTimeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	mu   sync.Mutex
	down map[string]time.Time // host → until when it is not asked
}

// Load reads control/callouts and the settings around it from dir. It
// returns nil when callouts is missing or empty: nothing is verified.
// cachePath "" means no cache; keep keeps the cache open (the one writer,
// for a long-running listener).
func Load(dir control.Dir, cachePath string, keep bool) (*Checker, error) {
	lines, _, err := dir.List("callouts")
	if err != nil || len(lines) == 0 {
		return nil, err
	}
	c := &Checker{Now: time.Now}
	if c.Callouts, err = route.Parse(route.SMTP, lines); err != nil {
		return nil, fmt.Errorf("control/callouts: %w", err)
	}
	sr, _, err := dir.List("smtproutes")
	if err != nil {
		return nil, err
	}
	if c.SMTPRoutes, err = route.Parse(route.SMTP, sr); err != nil {
		return nil, fmt.Errorf("control/smtproutes: %w", err)
	}
	if c.Helo, _, err = dir.Me(); err != nil {
		return nil, err
	}
	if c.Sender, _, err = dir.Line("calloutsender"); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		def  int64
		to   *time.Duration
	}{
		{"callouttimeout", DefaultTimeout, &c.Timeout},
		{"calloutconnecttimeout", DefaultConnectTimeout, &c.ConnectTimeout},
		{"calloutpositive", DefaultPositiveTTL, &c.PositiveTTL},
		{"calloutnegative", DefaultNegativeTTL, &c.NegativeTTL},
	} {
		v, err := dir.Int(s.name, s.def)
		if err != nil {
			return nil, err
		}
		*s.to = time.Duration(max(v, 0)) * time.Second
	}
	c.Timeout = max(c.Timeout, time.Second)
	c.ConnectTimeout = min(max(c.ConnectTimeout, time.Second), c.Timeout)
	if cachePath != "" {
		c.Cache = &Cache{Path: cachePath, Keep: keep}
	}
	return c, nil
}

// Host returns the host:port that verifies domain's recipients, or ""
// when the domain is not verified.
func (c *Checker) Host(domain string) string {
	r, ok := c.Callouts.Lookup(domain)
	if !ok {
		return ""
	}
	if r.Relay == "" {
		if r, ok = c.SMTPRoutes.Lookup(domain); !ok || r.Relay == "" {
			return ""
		}
	}
	port := r.Port
	if port == 0 {
		port = 25
	}
	return net.JoinHostPort(r.Relay, strconv.Itoa(port))
}

// Verify asks whether local@domain exists: from the cache, else from the
// domain's host. The string says where the answer came from, for the log.
func (c *Checker) Verify(local, domain string) (smtpd.Verdict, string) {
	host := c.Host(domain)
	if host == "" {
		return smtpd.NotVerified, ""
	}
	now := c.Now()
	key := strings.ToLower(domain) + "\x00" + local
	var cacheErr error
	if c.Cache != nil {
		v, ok, err := c.Cache.Get(key, now)
		if err == nil && ok {
			return v, "cached"
		}
		cacheErr = err
	}
	if c.isDown(host, now) {
		return smtpd.Unverified, "host " + host + " down, not asked again yet"
	}
	v, detail, err := c.probe(host, local+"@"+domain)
	if err != nil {
		var he *hostError
		if errors.As(err, &he) {
			c.markDown(host, now)
		}
		return smtpd.Unverified, err.Error()
	}
	if c.Cache != nil && cacheErr == nil {
		ttl := c.PositiveTTL
		if v == smtpd.Unknown {
			ttl = c.NegativeTTL
		}
		if ttl > 0 {
			cacheErr = c.Cache.Put(key, v, now.Add(ttl))
		}
	}
	if cacheErr != nil {
		detail += "; cache: " + cacheErr.Error()
	}
	return v, detail
}

func (c *Checker) isDown(host string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.down[host]
	if ok && now.After(until) {
		delete(c.down, host)
		return false
	}
	return ok
}

func (c *Checker) markDown(host string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down == nil {
		c.down = map[string]time.Time{}
	}
	c.down[host] = now.Add(hostDownFor)
}

// hostError is a host that could not be reached or stopped answering.
type hostError struct{ err error }

func (e *hostError) Error() string { return e.err.Error() }
func (e *hostError) Unwrap() error { return e.err }

// probe runs the dialogue with host for rcpt. An error means the answer
// is unknown: unverified.
func (c *Checker) probe(host, rcpt string) (smtpd.Verdict, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	dial := c.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: c.ConnectTimeout}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	conn, err := dial(ctx, host)
	if err != nil {
		return 0, "", &hostError{fmt.Errorf("callout to %s: %w", host, err)}
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	d := &dialogue{conn: conn, br: bufio.NewReaderSize(conn, maxReplyLine), host: host}
	code, text, err := d.reply()
	if err != nil {
		return 0, "", err
	}
	if code/100 != 2 {
		return 0, "", fmt.Errorf("callout to %s: greeting %d %s", host, code, text)
	}
	helo := c.Helo
	if helo == "" {
		helo = "localhost"
	}
	if code, text, err = d.command("EHLO " + helo); err == nil && code/100 == 5 {
		code, text, err = d.command("HELO " + helo)
	}
	if err != nil {
		return 0, "", err
	}
	if code/100 != 2 {
		return 0, "", fmt.Errorf("callout to %s: EHLO answered %d %s", host, code, text)
	}
	if code, text, err = d.command("MAIL FROM:<" + c.Sender + ">"); err != nil {
		return 0, "", err
	}
	if code/100 != 2 {
		// Not an answer about the recipient: a host that refuses the
		// probe's sender is misconfigured for callouts.
		return 0, "", fmt.Errorf("callout to %s: MAIL answered %d %s", host, code, text)
	}
	if code, text, err = d.command("RCPT TO:<" + rcpt + ">"); err != nil {
		return 0, "", err
	}
	d.send("QUIT") // best effort; the answer is in
	detail := fmt.Sprintf("%s answered %d %s", host, code, text)
	switch code / 100 {
	case 2:
		return smtpd.Exists, detail, nil
	case 5:
		return smtpd.Unknown, detail, nil
	}
	return 0, "", errors.New(detail)
}

type dialogue struct {
	conn net.Conn
	br   *bufio.Reader
	host string
}

func (d *dialogue) send(cmd string) error {
	if _, err := d.conn.Write([]byte(cmd + "\r\n")); err != nil {
		return &hostError{fmt.Errorf("callout to %s: %w", d.host, err)}
	}
	return nil
}

func (d *dialogue) command(cmd string) (int, string, error) {
	if err := d.send(cmd); err != nil {
		return 0, "", err
	}
	return d.reply()
}

// reply reads one reply, multi-line or not, and returns its code and the
// text of its last line.
func (d *dialogue) reply() (int, string, error) {
	for i := 0; i < maxReplyLines; i++ {
		line, err := d.br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errors.New("reply line too long")
			}
			return 0, "", &hostError{fmt.Errorf("callout to %s: %w", d.host, err)}
		}
		l := strings.TrimRight(string(line), "\r\n")
		if len(l) < 3 {
			return 0, "", fmt.Errorf("callout to %s: bad reply %q", d.host, l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 200 || code > 599 {
			return 0, "", fmt.Errorf("callout to %s: bad reply %q", d.host, l)
		}
		if len(l) > 3 && l[3] == '-' {
			continue
		}
		return code, strings.TrimSpace(l[3:]), nil
	}
	return 0, "", fmt.Errorf("callout to %s: reply longer than %d lines", d.host, maxReplyLines)
}
