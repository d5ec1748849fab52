// Package rbl looks a client's address up in DNS block lists, as
// rblsmtpd -r does: the address's reversed form under each zone, in the
// order of control/rblzones, the first listing deciding. An A record
// means listed; its TXT record, when there is one, is the text given to
// the client.
//
// Each line of rblzones names a zone; a leading '-' makes a listing there
// a permanent refusal (553), as RBLSMTPD's leading '-' does; otherwise
// the refusal is temporary (451), rblsmtpd's default. DNS failures are
// fail-open: the zone is skipped (rblsmtpd -C).
package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gw/lib/dns"
)

// Timeout bounds the lookups of one client in one zone.
const Timeout = 10 * time.Second

// Zone is one block list.
type Zone struct {
	Name      string
	Permanent bool
}

// Listing is one block list's answer on a client: the listener that asked
// words the refusal.
type Listing struct {
	Zone      string
	Text      string // the TXT record, when there is one
	Permanent bool   // refuse with 553 rather than 451
}

// Checker looks clients up in its zones.
type Checker struct {
	Zones    []Zone
	Resolver *dns.Resolver
}

// Parse returns the zones of rblzones' lines.
func Parse(lines []string) []Zone {
	var zs []Zone
	for _, l := range lines {
		z := Zone{Name: strings.TrimSpace(l)}
		if strings.HasPrefix(z.Name, "-") {
			z.Permanent, z.Name = true, strings.TrimSpace(z.Name[1:])
		}
		if z.Name != "" {
			zs = append(zs, z)
		}
	}
	return zs
}

// Query returns the name to look up for ip in zone: reversed octets for
// IPv4, reversed nibbles for IPv6 (RFC 5782).
func Query(ip netip.Addr, zone string) string {
	ip = ip.Unmap()
	var parts []string
	if ip.Is4() {
		b := ip.As4()
		for i := 3; i >= 0; i-- {
			parts = append(parts, fmt.Sprint(b[i]))
		}
	} else {
		b := ip.As16()
		for i := 15; i >= 0; i-- {
			parts = append(parts, fmt.Sprintf("%x", b[i]&0xf), fmt.Sprintf("%x", b[i]>>4))
		}
	}
	return strings.Join(parts, ".") + "." + strings.TrimSuffix(zone, ".") + "."
}

// Lookup returns the first listing of ip, or nil. The error reports
// zones that could not be asked; they count as not listing ip.
func (c *Checker) Lookup(ip string) (*Listing, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("client address %q: %w", ip, err)
	}
	var failed []string
	for _, z := range c.Zones {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		name := Query(addr, z.Name)
		_, err := c.Resolver.LookupIP(ctx, "ip4", name)
		if err != nil {
			cancel()
			if !dns.NotFound(err) {
				failed = append(failed, z.Name)
			}
			continue
		}
		l := &Listing{Zone: z.Name, Permanent: z.Permanent}
		if txt, err := c.Resolver.LookupTXT(ctx, name); err == nil && len(txt) > 0 {
			l.Text = strings.Join(txt, " ")
		}
		cancel()
		return l, nil
	}
	if failed != nil {
		return nil, fmt.Errorf("no answer from %s", strings.Join(failed, ", "))
	}
	return nil, nil
}
