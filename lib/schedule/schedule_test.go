package schedule

import (
	"testing"
	"time"
)

func TestNextRetry(t *testing.T) {
	birth := time.Unix(1_000_000, 0)
	cases := []struct {
		age, want int64 // seconds after birth
	}{
		{0, 400}, {1, 441}, {400, 1600}, {1600, 3600}, {3600, 6400}, {-5, 400},
	}
	for _, c := range cases {
		got := NextRetry(birth, birth.Add(time.Duration(c.age)*time.Second), RemoteSkip).Sub(birth)
		if got != time.Duration(c.want)*time.Second {
			t.Errorf("NextRetry at age %d = %v, want %ds", c.age, got, c.want)
		}
	}
}

func TestDests(t *testing.T) {
	now := time.Unix(1000, 0)
	d := NewDests(Limits{Overall: 3, PerDest: 2, BackoffMin: time.Minute, BackoffMax: 4 * time.Minute})
	steps := []struct {
		name string
		do   func()
		dest string
		want bool
	}{
		{"fresh", func() {}, "a", true},
		{"one active", func() { d.Start("a") }, "a", true},
		{"per-dest full", func() { d.Start("a") }, "a", false},
		{"other dest", func() {}, "b", true},
		{"overall full", func() { d.Start("b") }, "c", false},
		{"a fails", func() { d.Done("a", false, now, "refused") }, "a", false},
		{"other dest after a's failure", func() {}, "c", true},
		{"after backoff: one probe", func() { now = now.Add(time.Minute) }, "a", false},
		{"probe slot free", func() { d.Done("a", false, now, "refused") }, "a", false},
		{"a late failure in the backoff", func() {
			d.Start("a")
			now = now.Add(-time.Minute)
			d.Done("a", false, now, "late")
			now = now.Add(time.Minute)
		}, "a", false},
		{"second backoff is longer", func() { now = now.Add(time.Minute) }, "a", false},
		{"after 2 min", func() { now = now.Add(time.Minute) }, "a", true},
		{"probe running", func() { d.Start("a") }, "a", false},
		{"probe succeeds", func() { d.Done("a", true, now, "") }, "a", true},
		{"alarm resets", func() { d.Start("x"); d.Done("x", false, now, "e"); d.Reset() }, "x", true},
	}
	for _, s := range steps {
		s.do()
		if got := d.CanStart(s.dest, now); got != s.want {
			t.Errorf("%s: CanStart(%s) = %v, want %v (state %+v)", s.name, s.dest, got, s.want, d.Get(s.dest))
		}
	}
}
