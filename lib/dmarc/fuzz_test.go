package dmarc

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseForwarders: any control file gives forwarders or an error
// naming a line; what it accepts trusts a client exactly when one of its
// lines, read on its own, lists the client's address or a network that
// holds it.
func FuzzParseForwarders(f *testing.F) {
	f.Add("192.0.2.0/24\nlists.example.org\n# comment\n2001:db8::/32")
	f.Add("::ffff:192.0.2.1\n")
	f.Add("0.0.0.0/0")
	f.Add("192.0.0.0/1")
	f.Add("::ffff:198.51.100.77")
	probe := netip.MustParseAddr("198.51.100.77")
	f.Fuzz(func(t *testing.T, text string) {
		lines := strings.Split(text, "\n")
		fw, err := ParseForwarders(lines)
		if err != nil {
			return
		}
		listed := false
		for _, line := range lines {
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if p, err := netip.ParsePrefix(line); err == nil && p.Contains(probe) {
				listed = true
			}
			if a, err := netip.ParseAddr(line); err == nil && a.Unmap() == probe {
				listed = true
			}
		}
		if ok, _ := fw.Trusted(probe, "", ""); ok != listed {
			t.Fatalf("%q: trusted %v, but its lines list the probe: %v", text, ok, listed)
		}
	})
}
