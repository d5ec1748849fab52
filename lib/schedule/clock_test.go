package schedule

import (
	"testing"
	"time"
)

func TestCapped(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	hour := time.Hour
	cases := []struct {
		name string
		next time.Time
		want time.Time
	}{
		{"due already", now.Add(-time.Minute), now.Add(-time.Minute)},
		{"within the bound", now.Add(20 * time.Minute), now.Add(20 * time.Minute)},
		{"at the bound", now.Add(hour), now.Add(hour)},
		{"a day ahead: arrival stamped by a clock since stepped back", now.Add(24 * hour), now.Add(hour)},
		// The journal holds no next try for a recipient never tried.
		{"zero", time.Time{}, time.Time{}},
	}
	for _, c := range cases {
		if got := Capped(c.next, now, hour); !got.Equal(c.want) {
			t.Errorf("%s: Capped = %v, want %v", c.name, got, c.want)
		}
	}
	if got := Capped(now.Add(24*hour), now, 0); !got.Equal(now.Add(24 * hour)) {
		t.Errorf("no bound set: Capped = %v", got)
	}
}

// TestNextRetryArrivalAhead: a message stamped a day ahead of the clock is
// due 400 s after its arrival by the schedule, which the cap brings back
// to backoffmax from now.
func TestNextRetryArrivalAhead(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	arrival := now.Add(24 * time.Hour)
	next := NextRetry(arrival, now, RemoteSkip)
	if next.Sub(now) < 24*time.Hour {
		t.Fatalf("NextRetry = now+%v; the schedule alone was expected to count from the arrival", next.Sub(now))
	}
	if got := Capped(next, now, time.Hour); got.Sub(now) != time.Hour {
		t.Errorf("capped next try now+%v, want now+1h", got.Sub(now))
	}
}

func TestLiftKeepsProbing(t *testing.T) {
	now := time.Unix(1000, 0)
	d := NewDests(Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour})
	d.Start("a", Connection)
	d.Done("a", false, now, "refused")
	if d.CanStart("a", Connection, now) {
		t.Fatal("a backed-off destination may start")
	}
	d.Lift("a")
	if !d.CanStart("a", Connection, now) {
		t.Fatal("a lifted backoff still keeps the destination closed")
	}
	d.Start("a", Connection)
	if d.CanStart("a", Connection, now) {
		t.Error("a lifted destination that failed takes more than one probe at a time")
	}
	d.Lift("nowhere") // no state: nothing to lift, no panic
}
