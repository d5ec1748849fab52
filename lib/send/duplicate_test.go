package send

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gw/lib/deliver"
	"gw/lib/schedule"
)

func TestAfterDot(t *testing.T) {
	lost := &deliver.ConnError{Host: "mx.test", Err: errors.New("i/o timeout")}
	reply := &deliver.Reply{Code: 451, Text: "4.3.0 try later"}
	closing := &deliver.Reply{Code: 421, Text: "4.3.2 shutting down"}
	cases := []struct {
		name string
		dot  bool
		err  error
		dup  bool
	}{
		{"delivered", true, nil, false},
		{"a reply after the dot", true, reply, false},
		{"421 after the dot is a reply too", true, closing, false},
		{"connection lost after the dot", true, lost, true},
		{"aborted after the dot", true, errStopped, true},
		{"connection lost before the data", false, lost, false},
	}
	for _, c := range cases {
		got := afterDot(c.dot, c.err)
		var pd possibleDuplicate
		if errors.As(got, &pd) != c.dup {
			t.Errorf("%s: afterDot = %v, possible duplicate %v, want %v", c.name, got, !c.dup, c.dup)
		}
		if c.err != nil && !errors.Is(got, c.err) {
			t.Errorf("%s: the original error is lost: %v", c.name, got)
		}
		if c.err != nil && deliver.Permanent(got) {
			t.Errorf("%s: a possible duplicate became permanent", c.name)
		}
	}
}

// TestAfterCrashDefers: at start, a recipient whose last journal word is
// a dot record is deferred, due at once (an attempt counted, the possible
// duplicate named in its last error), and its dot record ended.
func TestAfterCrashDefers(t *testing.T) {
	s, id, clock := newTestSender(t, []string{":[192.0.2.1]:25"}, schedule.Limits{Overall: 1, PerDest: 1}, "a@src.test", "u@x.test", "v@x.test")
	s.cfg.BackoffMax = time.Hour
	if err := s.r.DotSent(id, []int{0}); err != nil {
		t.Fatal(err)
	}
	m, _ := s.r.Message(id)
	s.afterCrash(&m)
	m, _ = s.r.Message(id)
	a, b := m.Recipients[0], m.Recipients[1]
	if a.DotSent || a.Attempts != 1 || !strings.Contains(a.LastError(), "possible duplicate") || a.NextTry.After(*clock) {
		t.Errorf("recipient after the dot: %+v, want deferred as a possible duplicate", a)
	}
	if b.Attempts != 0 || b.LastError() != "" {
		t.Errorf("the other recipient: %+v, want untouched", b)
	}
}
