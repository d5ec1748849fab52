package dmarc

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseForwarders: any control file gives forwarders or an error
// naming a line; what it accepts never trusts a client it did not list.
func FuzzParseForwarders(f *testing.F) {
	f.Add("192.0.2.0/24\nlists.example.org\n# comment\n2001:db8::/32")
	f.Add("::ffff:192.0.2.1\n")
	f.Add("0.0.0.0/0")
	f.Fuzz(func(t *testing.T, text string) {
		fw, err := ParseForwarders(strings.Split(text, "\n"))
		if err != nil {
			return
		}
		if strings.Contains(text, "/0") || strings.Contains(text, "198.51.100.77") || strings.Contains(text, ":") {
			return // a network that may cover the probe
		}
		if ok, _ := fw.Trusted(netip.MustParseAddr("198.51.100.77"), "", ""); ok {
			t.Fatalf("%q trusts an address it does not list", text)
		}
	})
}
