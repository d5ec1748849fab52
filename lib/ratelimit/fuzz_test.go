package ratelimit

import "testing"

// FuzzParseRate: whatever a rules file says, a rate is either refused or
// a positive count over a window inside the bounds.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"30/60s", "100/1h", "5/300", "0/1s", "1/1ns", "9223372036854775807/168h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.N < 1 || r.Per < 1e9 || r.Per > maxWindow || !r.Set() {
			t.Fatalf("ParseRate(%q) = %+v", s, r)
		}
	})
}
