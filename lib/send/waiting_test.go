package send

import (
	"fmt"
	"net"
	"testing"
	"time"

	"gw/lib/qctl"
	"gw/lib/queue"
	"gw/lib/schedule"
)

// deadRoute returns an smtproutes line to a loopback port that refuses
// connections, and the destination it names.
func deadRoute(t *testing.T) (string, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return fmt.Sprintf(":[127.0.0.1]:%d", port), fmt.Sprintf("smtp:127.0.0.1:%d", port)
}

// backOff makes dest fail once at now, as another message's probe would.
func backOff(t *testing.T, s *Sender, dest string, now time.Time) {
	t.Helper()
	s.dests.Start(dest, schedule.Connection)
	if !s.dests.Done(dest, false, now, "connection refused") {
		t.Fatal("no backoff after a failure")
	}
	s.destOut[dest] = refused
}

// refused is a connection refused, as the journal keeps it.
var refused = queue.Outcome{Source: queue.FromConn, Status: "4.4.1", Text: "connection refused",
	Host: "dead.test", Addr: "127.0.0.1:9", Stage: "connect"}

// TestWaitingRecipientsShowNextTry: recipients that wait behind a
// backed-off destination get the end of the backoff as their next try and
// the destination's error as their last one, with no attempt counted —
// what gw-qstat list shows.
func TestWaitingRecipientsShowNextTry(t *testing.T) {
	rt, dest := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	backOff(t, s, dest, *clock)
	s.plan(id, *clock)
	m, _ := s.r.Message(id)
	rc := m.Recipients[0]
	if !rc.NextTry.Equal(clock.Add(time.Minute)) || rc.Outcome != refused || rc.Attempts != 0 {
		t.Errorf("waiting recipient: next %v, error %q, attempts %d; want the backoff's end, its error, none",
			rc.NextTry, rc.LastError(), rc.Attempts)
	}
}

// TestRetryOverTheBackoff: gw-qctl retry of a message whose job waits in
// a backed-off destination's line starts it at once; one probe at a time
// still holds.
func TestRetryOverTheBackoff(t *testing.T) {
	rt, dest := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Hour, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	backOff(t, s, dest, *clock)
	s.plan(id, *clock)
	s.dispatch()
	if s.dests.Active() != 0 || len(s.waiting[dest]) != 1 {
		t.Fatalf("before retry: %d active, %d waiting", s.dests.Active(), len(s.waiting[dest]))
	}
	if err := s.ctlAction(qctl.Retry, id); err != nil {
		t.Fatal(err)
	}
	s.dispatch()
	if s.dests.Active() != 1 || len(s.waiting[dest]) != 0 {
		t.Fatalf("after retry: %d active, %d waiting; want the job started", s.dests.Active(), len(s.waiting[dest]))
	}
	s.jobDone(<-s.done)
	m, _ := s.r.Message(id)
	if rc := m.Recipients[0]; rc.Attempts != 1 {
		t.Errorf("after the forced attempt: %+v, want one attempt", rc)
	}

	// A message not yet planned: retry plans it and lifts the backoff the
	// failed attempt just started.
	if _, off := s.dests.BackedOff(dest, *clock); !off {
		t.Fatal("the forced attempt failed without a backoff")
	}
	if err := s.ctlAction(qctl.Retry, id); err != nil {
		t.Fatal(err)
	}
	s.dispatch()
	if s.dests.Active() != 1 {
		t.Fatalf("second retry: %d active, want 1", s.dests.Active())
	}
	s.jobDone(<-s.done)
}

// TestExpireWaitingNeedsAnAttempt: after the clock jumps past
// queuelifetime, a probe that fails again fails the waiting jobs only of
// recipients that have had an attempt of their own; an untried one keeps
// its place and is postponed.
func TestExpireWaitingNeedsAnAttempt(t *testing.T) {
	rt, dest := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	backOff(t, s, dest, *clock)
	s.plan(id, *clock)
	*clock = clock.Add(48 * time.Hour) // lifetime is 1 h
	backOff(t, s, dest, *clock)
	s.expireWaiting(dest)
	if len(s.waiting[dest]) != 1 || s.waiting[dest][0].expired {
		t.Fatalf("an untried recipient was expired: line %v", s.waiting[dest])
	}
	m, _ := s.r.Message(id)
	if rc := m.Recipients[0]; rc.State != queue.Pending || !rc.NextTry.Equal(clock.Add(2*time.Minute)) {
		t.Errorf("untried recipient after the second backoff: %+v, want pending until its end", rc)
	}

	// Once tried (and deferred), the same wait fails it for its age.
	if err := s.r.Deferred(id, 0, clock.Add(time.Hour), refused); err != nil {
		t.Fatal(err)
	}
	*clock = clock.Add(3 * time.Minute)
	backOff(t, s, dest, *clock)
	s.expireWaiting(dest)
	if len(s.waiting[dest]) != 0 {
		t.Fatalf("a tried recipient past the lifetime still waits")
	}
	j := <-s.done
	m, _ = s.r.Message(id)
	if rc := m.Recipients[0]; rc.State != queue.Failed || rc.Outcome.Status != "5.4.7" ||
		rc.Outcome.Source != queue.FromConn || rc.Outcome.Text != refused.Text {
		t.Errorf("tried recipient past the lifetime: %+v, want failed 5.4.7 with its own last outcome", rc)
	}
	s.jobDone(j)
	s.jobDone(<-s.done) // the bounce and removal, before the queue closes
}

// TestArrivalAheadOfTheClock: a message stamped a day ahead of the clock
// (which then stepped back) fails temporarily and is due again within
// backoffmax, not a day later.
func TestArrivalAheadOfTheClock(t *testing.T) {
	rt, dest := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	s.cfg.BackoffMax = time.Hour
	*clock = clock.Add(-24 * time.Hour)
	s.plan(id, *clock)
	j := <-s.done
	if j.dest != dest {
		t.Fatalf("job for %s, want %s", j.dest, dest)
	}
	s.jobDone(j)
	m, _ := s.r.Message(id)
	rc := m.Recipients[0]
	if rc.Attempts != 1 || rc.NextTry.Sub(*clock) > time.Hour {
		t.Errorf("after a failure a day before arrival: %+v, next in %v; want at most backoffmax", rc, rc.NextTry.Sub(*clock))
	}
	if at := s.dueAt[id]; at.Sub(*clock) > time.Hour {
		t.Errorf("message due in %v, want at most backoffmax", at.Sub(*clock))
	}
}

// TestNextTryBehindAClockStep: a next try recorded a day ahead (the clock
// has since stepped back) is brought to backoffmax from now, in the
// journal too, and the recipient comes due then, not a bound later.
func TestNextTryBehindAClockStep(t *testing.T) {
	rt, _ := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	s.cfg.BackoffMax = time.Hour
	if err := s.r.Deferred(id, 0, clock.Add(24*time.Hour), queue.Outcome{Source: queue.FromReply, Code: 451, Text: "later", Status: "4.0.0"}); err != nil {
		t.Fatal(err)
	}
	m, _ := s.r.Message(id)
	s.schedule(&m)
	if at := s.dueAt[id]; !at.Equal(clock.Add(time.Hour)) {
		t.Fatalf("due at now+%v, want now+1h", at.Sub(*clock))
	}
	m, _ = s.r.Message(id)
	if rc := m.Recipients[0]; !rc.NextTry.Equal(clock.Add(time.Hour)) || rc.Attempts != 1 {
		t.Errorf("recorded: %+v, want next try now+1h and the one attempt", rc)
	}
	*clock = clock.Add(time.Hour)
	s.dispatch()
	if s.dests.Active() != 1 {
		t.Fatalf("at the bound: %d deliveries started, want 1", s.dests.Active())
	}
	s.jobDone(<-s.done)
}

// TestIdleSenderSleepsUntilSomethingIsDue: with nothing to do, gw-send's
// loop sleeps until the periodic collect, not a second; a backoff's end,
// a message's next try and an idle session's expiry each bring the wake
// forward to exactly when it is due.
func TestIdleSenderSleepsUntilSomethingIsDue(t *testing.T) {
	rt, dest := deadRoute(t)
	s, id, clock := newTestSender(t, []string{rt}, schedule.Limits{Overall: 10, PerDest: 5, BackoffMin: time.Minute, BackoffMax: time.Hour},
		"a@src.test", "u@dead.test")
	if d := s.nextWake(); d != collectEvery {
		t.Fatalf("idle, the loop sleeps %v; want until the collect, %v", d, collectEvery)
	}
	s.makeDue(id, clock.Add(10*time.Minute))
	if d := s.nextWake(); d != collectEvery {
		t.Fatalf("a message due in 10 min: the loop sleeps %v; want %v", d, collectEvery)
	}
	s.makeDue(id, clock.Add(3*time.Minute))
	if d := s.nextWake(); d != 3*time.Minute {
		t.Fatalf("a message due in 3 min: the loop sleeps %v; want 3m", d)
	}
	backOff(t, s, dest, *clock)
	if d := s.nextWake(); d != time.Minute {
		t.Fatalf("a destination backed off for a minute: the loop sleeps %v; want 1m", d)
	}
	s.pool.put(dest, &pooled{opened: *clock}, *clock, 5, 10)
	if d := s.nextWake(); d != IdleLimit {
		t.Fatalf("a session idle since now: the loop sleeps %v; want its expiry, %v", d, IdleLimit)
	}
	*clock = clock.Add(IdleLimit + time.Second)
	if d := s.nextWake(); d != time.Millisecond {
		t.Fatalf("a session past its idle limit: the loop sleeps %v; want at once (1ms)", d)
	}
}
