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
		{"one active", func() { d.Start("a", Connection) }, "a", true},
		{"per-dest full", func() { d.Start("a", Connection) }, "a", false},
		{"other dest", func() {}, "b", true},
		{"overall full", func() { d.Start("b", Connection) }, "c", false},
		{"a fails", func() { d.Done("a", false, now, "refused") }, "a", false},
		{"other dest after a's failure", func() {}, "c", true},
		{"after backoff: one probe", func() { now = now.Add(time.Minute) }, "a", false},
		{"probe slot free", func() { d.Done("a", false, now, "refused") }, "a", false},
		{"a late failure in the backoff", func() {
			d.Start("a", Connection)
			now = now.Add(-time.Minute)
			d.Done("a", false, now, "late")
			now = now.Add(time.Minute)
		}, "a", false},
		{"second backoff is longer", func() { now = now.Add(time.Minute) }, "a", false},
		{"after 2 min", func() { now = now.Add(time.Minute) }, "a", true},
		{"probe running", func() { d.Start("a", Connection) }, "a", false},
		{"probe succeeds", func() { d.Done("a", true, now, "") }, "a", true},
		{"alarm resets", func() { d.Start("x", Connection); d.Done("x", false, now, "e"); d.Reset() }, "x", true},
	}
	for _, s := range steps {
		s.do()
		if got := d.CanStart(s.dest, Connection, now); got != s.want {
			t.Errorf("%s: CanStart(%s) = %v, want %v (state %+v)", s.name, s.dest, got, s.want, d.Get(s.dest))
		}
	}
}

// TestPipelinedLimits: a Pipelined destination takes PerPipelined
// deliveries, and counts in the overall limit as the connections they
// fill, PipelineDepth a connection; a Connection destination keeps
// PerDest, a connection a delivery.
func TestPipelinedLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	l := Limits{Overall: 2, PerDest: 2, PerPipelined: 5, PipelineDepth: 2, BackoffMin: time.Minute, BackoffMax: time.Minute}
	if got := l.PerDestFor(Pipelined); got != 5 {
		t.Errorf("PerDestFor(Pipelined) = %d, want 5", got)
	}
	if got := l.PerDestFor(Connection); got != 2 {
		t.Errorf("PerDestFor(Connection) = %d, want 2", got)
	}
	if got := (Limits{PerDest: 3}).PerDestFor(Pipelined); got != 3 {
		t.Errorf("PerDestFor(Pipelined) without PerPipelined = %d, want PerDest's 3", got)
	}
	d := NewDests(l)
	check := func(step, name string, k Kind, want bool, conns int) {
		t.Helper()
		if got := d.CanStart(name, k, now); got != want {
			t.Errorf("%s: CanStart(%s) = %v, want %v", step, name, got, want)
		}
		if d.Connections() != conns {
			t.Errorf("%s: %d connections counted, want %d", step, d.Connections(), conns)
		}
	}
	d.Start("s", Connection)
	d.Start("q", Pipelined)
	check("one of each", "s", Connection, false, 2)
	check("room on q's connection", "q", Pipelined, true, 2)
	d.Start("q", Pipelined)
	check("q's connection full, overall full", "q", Pipelined, false, 2)
	check("new pipelined destination, overall full", "r", Pipelined, false, 2)
	d.Done("s", true, now, "")
	check("s done", "q", Pipelined, true, 1)
	d.Start("q", Pipelined)
	d.Start("q", Pipelined)
	check("q: 4 on 2 connections", "q", Pipelined, false, 2)
	l.Overall = 10
	d.SetLimits(l)
	check("more connections allowed", "q", Pipelined, true, 2)
	d.Start("q", Pipelined)
	check("q at PerPipelined", "q", Pipelined, false, 3)
	check("SMTP beside it", "s", Connection, true, 3)
	for range 5 {
		d.Done("q", false, now, "refused")
	}
	check("q failed: backed off", "q", Pipelined, false, 0)
	now = now.Add(time.Minute)
	check("after the backoff: a probe", "q", Pipelined, true, 0)
	d.Start("q", Pipelined)
	check("one probe at a time", "q", Pipelined, false, 1)
	d.SetLimits(Limits{Overall: 0, PerPipelined: 5, PipelineDepth: 2})
	d.Done("q", true, now, "")
	d.Start("q", Pipelined)
	check("concurrencyremote 0: nothing more", "q", Pipelined, false, 1)
}
