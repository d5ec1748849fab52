package arc

import (
	"testing"

	"gw/lib/dkim"
)

// FuzzSets: whatever ARC fields a message carries, collecting them gives
// complete sets numbered 1..N within the limit, or an error.
func FuzzSets(f *testing.F) {
	f.Add([]byte("ARC-Seal: i=1; cv=none\r\nARC-Message-Signature: i=1; a=rsa-sha256\r\nARC-Authentication-Results: i=1; mx.test; arc=none\r\n\r\n"))
	f.Add([]byte("ARC-Seal: i=2; cv=pass\r\n\r\n"))
	f.Add([]byte("ARC-Seal: i = 01 ; cv=none\r\nARC-Seal: i=1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, _, err := dkim.Split(msg)
		if err != nil {
			return
		}
		chain, err := sets(fields)
		if err != nil {
			return
		}
		if len(chain) > MaxInstance {
			t.Fatalf("%d sets", len(chain))
		}
		for i, s := range chain {
			if s.Instance != i+1 || s.AAR.Raw == "" || s.AMS.Raw == "" || s.Seal.Raw == "" {
				t.Fatalf("set %d: %+v", i+1, s)
			}
		}
	})
}
