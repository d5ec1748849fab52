package send

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gw/lib/deliver"
	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
)

// newTestSender returns a Sender on a fresh queue holding one message
// from sender to rcpts, with the route lines of smtproutes, the limits
// lim and a clock the test sets.
func newTestSender(t *testing.T, smtproutes []string, lim schedule.Limits, sender string, rcpts ...string) (*Sender, queue.ID, *time.Time) {
	t.Helper()
	dir := t.TempDir()
	if err := queue.Init(dir); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	w, err := q.NewMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: test\n\nbody\n")
	if err := w.Commit(envelope.Envelope{Sender: sender, Recipients: rcpts}); err != nil {
		t.Fatal(err)
	}
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	msgs := r.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	tbl, err := route.Parse(route.SMTP, smtproutes)
	if err != nil {
		t.Fatal(err)
	}
	clock := msgs[0].Arrival
	cfg := &Config{Me: "gw.test", Helo: "gw.test", Routes: route.Routes{tbl}, Lifetime: time.Hour,
		Timeout: time.Second, ConnectTimeout: time.Second, SMTPPort: 25}
	s := newSender(Options{QueueDir: dir}, q, r, logline.New(io.Discard), cfg)
	s.dests, s.now, s.done = schedule.NewDests(lim), func() time.Time { return clock }, make(chan *job, 8)
	return s, msgs[0].ID, &clock
}

// TestPlanOneJobADestination: a message's due recipients make one job a
// destination — recipients of several domains routed to one relay share
// it, MX domains get one each — and a deferred recipient not yet due
// stays out and makes the message due at its next try.
func TestPlanOneJobADestination(t *testing.T) {
	s, id, clock := newTestSender(t, []string{".relayed.test:[192.0.2.1]:2525", "x.test:[192.0.2.1]:2525"},
		schedule.Limits{Overall: 0, PerDest: 1}, // nothing may start: jobs wait in their lines
		"a@src.test", "u@a.relayed.test", "v@b.relayed.test", "w@x.test", "m1@mx.test", "m2@MX.test", "later@mx.test", "o@other.test")
	next := clock.Add(time.Hour)
	if err := s.r.Deferred(id, 5, next, queue.Outcome{Source: queue.FromReply, Code: 451, Text: "try later", Status: "4.0.0"}); err != nil {
		t.Fatal(err)
	}
	s.plan(id, *clock)
	got := map[string]string{}
	for dest, line := range s.waiting {
		if len(line) != 1 {
			t.Errorf("%s: %d jobs, want 1", dest, len(line))
		}
		got[dest] = fmt.Sprint(line[0].rcpts)
	}
	want := map[string]string{"smtp:192.0.2.1:2525": "[0 1 2]", "mx.test": "[3 4]", "other.test": "[6]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	if at, ok := s.dueAt[id]; !ok || !at.Equal(next) {
		t.Errorf("message due at %v (%v), want the deferred recipient's %v", at, ok, next)
	}
	if f := s.flight[id]; f == nil || f.jobs != 3 || len(f.rcpts) != 6 {
		t.Errorf("in flight: %+v, want 3 jobs over 6 recipients", f)
	}
	// Planned again, the recipients in flight are not taken twice.
	s.plan(id, *clock)
	n := 0
	for _, line := range s.waiting {
		n += len(line)
	}
	if n != 3 {
		t.Errorf("%d jobs after a second plan, want 3", n)
	}
}

// TestBackedOffDestinationWaits: jobs for a destination backed off as a
// whole wait in its line without a try, and start when the backoff ends;
// one probe at a time while it has failures.
func TestBackedOffDestinationWaits(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // connections are refused there
	s, id, clock := newTestSender(t, []string{fmt.Sprintf(":[127.0.0.1]:%d", port)},
		schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test", "v@dead2.test")
	dest := fmt.Sprintf("smtp:127.0.0.1:%d", port)
	s.dests.Start(dest, schedule.Connection)
	if !s.dests.Done(dest, false, *clock, "connection refused") {
		t.Fatal("no backoff after a failure")
	}
	s.plan(id, *clock)
	if line := s.waiting[dest]; len(line) != 1 || len(line[0].rcpts) != 2 || s.dests.Active() != 0 {
		t.Fatalf("waiting %v, active %d: want one job for both recipients, none started", line, s.dests.Active())
	}
	*clock = clock.Add(59 * time.Second)
	s.dispatch()
	if s.dests.Active() != 0 {
		t.Fatal("a job started during the backoff")
	}
	*clock = clock.Add(2 * time.Second)
	s.dispatch()
	if s.dests.Active() != 1 || len(s.waiting[dest]) != 0 {
		t.Fatalf("after the backoff: %d active, %d waiting", s.dests.Active(), len(s.waiting[dest]))
	}
	j := <-s.done // the probe: refused again
	if j.reachable || j.lastErr == "" {
		t.Errorf("probe to a refusing port: reachable %v, error %q", j.reachable, j.lastErr)
	}
	s.jobDone(j)
	until, off := s.dests.BackedOff(dest, *clock)
	if !off || until.Sub(*clock) != 2*time.Minute {
		t.Errorf("second backoff until %v (%v), want 2 min from now", until, off)
	}
	m, _ := s.r.Message(id)
	for _, rc := range m.Recipients {
		if rc.State != queue.Pending || rc.Attempts != 1 || !rc.NextTry.After(*clock) {
			t.Errorf("recipient %s after the probe: %+v, want deferred once", rc.Address, rc)
		}
	}
}

func TestWarnNow(t *testing.T) {
	arrival := time.Unix(1_000_000, 0)
	at := func(sec float64) time.Time { return arrival.Add(time.Duration(sec * float64(time.Second))) }
	// deferred describes the recipient after an attempt at age sec.
	deferred := func(attempts int, sec float64) queue.Recipient {
		return queue.Recipient{State: queue.Pending, Attempts: attempts, NextTry: schedule.NextRetry(arrival, at(sec), schedule.RemoteSkip)}
	}
	cases := []struct {
		name  string
		after time.Duration
		now   float64
		rc    queue.Recipient
		want  bool
	}{
		{"off", 0, 100000, deferred(5, 90000), false},
		{"first attempt, too young", time.Hour, 0, queue.Recipient{}, false},
		{"first attempt past the age", time.Hour, 3600, queue.Recipient{}, true},
		{"on schedule: the attempt at 1 h", time.Hour, 3600, deferred(2, 1600), true},
		{"on schedule: the attempt after", time.Hour, 6400, deferred(3, 3600), false},
		{"late attempt after an early one", time.Hour, 50000, deferred(1, 0), true},
		{"inside the bucket of the age", 3700 * time.Second, 3700, deferred(2, 1600), false},
		{"bucket reached", 3700 * time.Second, 3721, deferred(2, 1600), true},
		{"one second", time.Second, 1.1, deferred(1, 0.05), true},
		{"one second, again", time.Second, 2.5, deferred(2, 1.1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := warnNow(c.after, arrival, at(c.now), c.rc); got != c.want {
				t.Errorf("warnNow(%v, age %v, %+v) = %v, want %v", c.after, c.now, c.rc, got, c.want)
			}
		})
	}
}

// TestStopAbandonsWaitingJobs: on stop, jobs waiting in their
// destination's line are ended undelivered, so nothing stays in flight
// and the loop can exit (it waits for the flight to empty).
func TestStopAbandonsWaitingJobs(t *testing.T) {
	s, id, clock := newTestSender(t, []string{".relayed.test:[192.0.2.1]:2525"},
		schedule.Limits{Overall: 0, PerDest: 1}, // nothing may start: jobs wait in their lines
		"a@src.test", "u@a.relayed.test", "m@mx.test")
	s.plan(id, *clock)
	if len(s.waiting) != 2 || len(s.flight) != 1 {
		t.Fatalf("%d lines waiting, %d messages in flight: want 2 and 1", len(s.waiting), len(s.flight))
	}
	if n := s.abandonWaiting(); n != 2 {
		t.Errorf("%d jobs abandoned, want 2", n)
	}
	if len(s.waiting) != 0 || len(s.flight) != 0 || s.dests.Active() != 0 {
		t.Errorf("after stop: %d lines waiting, %d in flight, %d active: want none", len(s.waiting), len(s.flight), s.dests.Active())
	}
	m, _ := s.r.Message(id)
	for _, rc := range m.Recipients {
		if rc.State != queue.Pending || rc.Attempts != 0 {
			t.Errorf("recipient %s after stop: %+v, want pending, untried", rc.Address, rc)
		}
	}
}

// TestQMTPLimits: concurrencyqmtp defaults to what a QMTP connection
// pipelines; a job for a qmtproutes destination is counted as Pipelined,
// so it starts while an SMTP destination under the same concurrencydest
// waits.
func TestQMTPLimits(t *testing.T) {
	ctl := t.TempDir()
	os.WriteFile(filepath.Join(ctl, "me"), []byte("gw.test\n"), 0o644)
	cfg, err := ReadConfig(ctl)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PerQMTP != deliver.QMTPInFlight || cfg.PerDest != 10 {
		t.Errorf("defaults: concurrencyqmtp %d, concurrencydest %d; want %d, 10", cfg.PerQMTP, cfg.PerDest, deliver.QMTPInFlight)
	}
	os.WriteFile(filepath.Join(ctl, "concurrencyqmtp"), []byte("200\n"), 0o644)
	if cfg, err = ReadConfig(ctl); err != nil {
		t.Fatal(err)
	}
	lim := cfg.limits()
	if lim.PerPipelined != 200 || lim.PerDest != 10 || lim.PipelineDepth != deliver.QMTPInFlight {
		t.Errorf("limits %+v: want PerPipelined 200, PerDest 10, PipelineDepth %d", lim, deliver.QMTPInFlight)
	}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // connections are refused there
	s, id, clock := newTestSender(t, []string{fmt.Sprintf("s.test:[127.0.0.1]:%d", port)},
		schedule.Limits{Overall: 2, PerDest: 1, PerPipelined: 3, PipelineDepth: deliver.QMTPInFlight},
		"a@src.test", "u@q.test", "v@s.test")
	qt, err := route.Parse(route.QMTP, []string{fmt.Sprintf("q.test:[127.0.0.1]:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.Routes = append(route.Routes{qt}, s.cfg.Routes...)
	qdest, sdest := fmt.Sprintf("qmtp:127.0.0.1:%d", port), fmt.Sprintf("smtp:127.0.0.1:%d", port)
	s.dests.Start(qdest, schedule.Pipelined)
	s.dests.Start(sdest, schedule.Connection)
	s.plan(id, *clock)
	if line := s.waiting[sdest]; len(line) != 1 {
		t.Errorf("SMTP destination at concurrencydest: %d jobs waiting, want 1", len(line))
	}
	if line := s.waiting[qdest]; len(line) != 0 {
		t.Errorf("QMTP destination under concurrencyqmtp: %d jobs waiting, want none", len(line))
	}
	if st := s.dests.Get(qdest); st == nil || st.Active != 2 || st.Kind != schedule.Pipelined {
		t.Errorf("QMTP destination %+v: want 2 active, pipelined", st)
	}
	if s.dests.Connections() != 2 {
		t.Errorf("%d connections counted, want 2 (one each)", s.dests.Connections())
	}
	j := <-s.done // the QMTP job: refused
	if j.dest != qdest || j.kind() != schedule.Pipelined {
		t.Errorf("job for %s, kind %v", j.dest, j.kind())
	}
	s.jobDone(j)
}
