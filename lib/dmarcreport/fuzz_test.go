package dmarcreport

import (
	"strings"
	"testing"
)

// FuzzParseURI: a rua= entry comes from the Internet; it gives a mailto
// destination with an address and a size that is not negative, or a
// refusal.
func FuzzParseURI(f *testing.F) {
	f.Add("mailto:dmarc@example.com!10m")
	f.Add("MAILTO:a@b.example!99999999999999999999t")
	f.Add("https://example.com/report")
	f.Fuzz(func(t *testing.T, u string) {
		d := parseURI(u)
		if d.MaxSize < 0 {
			t.Fatalf("%q: size %d", u, d.MaxSize)
		}
		if d.Refused == "" && (!strings.Contains(d.Address, "@") || strings.ContainsAny(d.Address, "\r\n")) {
			t.Fatalf("%q accepted as %q", u, d.Address)
		}
	})
}
