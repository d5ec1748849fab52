package greylist

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestNetwork(t *testing.T) {
	cases := map[string]string{
		"192.0.2.77":           "192.0.2.0/24",
		"::ffff:192.0.2.77":    "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"::1":                  "::/64",
		"not an address":       "not an address",
		"":                     "",
		"192.0.2.1%eth0":       "192.0.2.1%eth0",
	}
	for in, want := range cases {
		if got := Network(in); got != want {
			t.Errorf("Network(%q) = %q, want %q", in, got, want)
		}
	}
}

func newList(t *testing.T, keep bool) (*List, *time.Time) {
	now := time.Unix(1e9, 0)
	l := &List{Path: filepath.Join(t.TempDir(), "greylist.db"), Delay: 5 * time.Minute, Expiry: time.Hour,
		Whitelist: 24 * time.Hour, Keep: keep, Now: func() time.Time { return now }}
	t.Cleanup(func() { l.Close() })
	return l, &now
}

// TestCheck walks triplets through first try, early retry, retry after
// the delay, auto-whitelisting of the network, and expiry.
func TestCheck(t *testing.T) {
	for _, keep := range []bool{false, true} {
		l, now := newList(t, keep)
		steps := []struct {
			name          string
			advance       time.Duration
			ip, from, rcp string
			pass          bool
		}{
			{"first try", 0, "192.0.2.1", "a@x.example", "u@example.com", false},
			{"retry too early", time.Minute, "192.0.2.1", "a@x.example", "u@example.com", false},
			{"another triplet", 0, "198.51.100.1", "b@y.example", "u@example.com", false},
			{"retry after the delay", 5 * time.Minute, "192.0.2.1", "a@x.example", "u@example.com", true},
			{"same /24, new triplet: whitelisted", 0, "192.0.2.200", "c@z.example", "v@example.com", true},
			{"case of addresses ignored", 0, "198.51.100.1", "B@Y.EXAMPLE", "U@example.com", true},
			{"hostile bytes in addresses", 0, "203.0.113.9", "a\x00b@x", "u\n@example.com", false},
			{"whitelist lapses", 25 * time.Hour, "192.0.2.7", "d@x.example", "w@example.com", false},
			{"first try expired: greylisted again", 2 * time.Hour, "192.0.2.7", "d@x.example", "w@example.com", false},
		}
		for _, s := range steps {
			*now = now.Add(s.advance)
			pass, err := l.Check(s.ip, s.from, s.rcp)
			if err != nil {
				t.Fatalf("keep=%v %s: %v", keep, s.name, err)
			}
			if pass != s.pass {
				t.Errorf("keep=%v %s: Check(%q, %q, %q) = %v, want %v", keep, s.name, s.ip, s.from, s.rcp, pass, s.pass)
			}
		}
	}
}

// TestCheckLocked: another process holds the file (bbolt allows one
// writer): Check fails after its lock timeout instead of hanging, and the
// caller fails open.
func TestCheckLocked(t *testing.T) {
	l, _ := newList(t, false)
	db, err := bolt.Open(l.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	if _, err := l.Check("192.0.2.1", "a@x", "u@example.com"); err == nil {
		t.Errorf("Check on a locked file succeeded")
	}
	if d := time.Since(start); d > 3*lockTimeout {
		t.Errorf("Check waited %v on a locked file", d)
	}
}

func TestSetTimings(t *testing.T) {
	l, now := newList(t, true)
	l.Check("192.0.2.1", "a@x", "u@example.com")
	l.SetTimings(&List{Delay: time.Second, Expiry: time.Hour, Whitelist: time.Hour})
	*now = now.Add(2 * time.Second)
	if pass, _ := l.Check("192.0.2.1", "a@x", "u@example.com"); !pass {
		t.Errorf("new delay of 1 s not applied")
	}
}

func TestStampRoundTrip(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 9)} {
		if _, ok := unix(b); ok {
			t.Errorf("unix(%x) accepted", b)
		}
	}
	now := time.Unix(1234567890, 0)
	if got, ok := unix(stamp(now)); !ok || !got.Equal(now) {
		t.Errorf("round trip: %v %v", got, ok)
	}
}
