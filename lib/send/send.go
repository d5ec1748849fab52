// Package send is gw-send's queue runner: it owns one queue's committed
// messages, schedules their recipients, delivers them through lib/deliver
// along lib/route's routes, records every outcome in the queue's journal,
// bounces what failed (lib/bounce) and removes what is finished.
//
// Implementation summary: one goroutine (the loop) owns all scheduling
// state — a heap of messages by due time, the destinations table
// (lib/schedule) and the jobs in flight. A job is one message's due
// recipients of one domain; it runs on a worker goroutine (worker.go),
// records its outcomes through the runner (which is safe for concurrent
// use) and reports back to the loop. A job that finds its destination unreachable
// backs the destination off as a whole; jobs for a backed-off or busy
// destination wait in that destination's line, so they cost nothing until
// it opens. Queue control requests (lib/qctl) are served by the loop;
// those that touch a message in flight cancel its jobs first.
package send

import (
	"container/heap"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gw/lib/dns"
	"gw/lib/logline"
	"gw/lib/qctl"
	"gw/lib/queue"
	"gw/lib/route"
	"gw/lib/schedule"
)

// Signal is an outside request to the loop (SIGHUP, SIGALRM, SIGTERM).
type Signal int

// Signals the loop understands.
const (
	Reload   Signal = iota // SIGHUP: re-read control files
	RetryAll               // SIGALRM: everything due now, backoffs forgotten
	Stop                   // SIGTERM: finish or abort deliveries, exit
)

// Options are what main hands to Run.
type Options struct {
	QueueDir   string
	ControlDir string
	Log        *logline.Logger
	Signals    <-chan Signal
	// StopGrace is how long deliveries in flight may go on after Stop
	// before they are aborted.
	StopGrace time.Duration
}

// Sender is a running gw-send.
type Sender struct {
	opt   Options
	q     *queue.Queue
	r     *queue.Runner
	log   *logline.Logger
	cfg   *Config
	cfgMu sync.RWMutex
	res   route.Resolver
	dests *schedule.Dests
	pool  *pool
	now   func() time.Time

	due     dueHeap
	dueAt   map[queue.ID]time.Time
	flight  map[queue.ID]*inflight
	waiting map[string][]*job        // per destination
	forced  map[queue.ID]bool        // due now whatever the recipients' next try says
	destOut map[string]queue.Outcome // why each backed-off destination is
	// transports reach the servers, one a protocol (transport.go).
	transports map[route.Proto]Transport
	done       chan *job
	work       chan func() // to a worker waiting for a job (worker.go)
	ctlReqs    map[string]*ctlReq
}

// inflight is a message with jobs running (or its finish under way).
type inflight struct {
	jobs   int
	rcpts  map[int]bool // recipient indexes being delivered
	cancel context.CancelFunc
	ctx    context.Context
	after  []ctlOp // control operations waiting for the jobs to end
}

var now = time.Now

// Run runs gw-send on a queue until Stop: it takes the runner lock, so a
// second gw-send on the same queue fails with queue.ErrRunnerActive.
func Run(opt Options) error {
	cfg, err := ReadConfig(opt.ControlDir)
	if err != nil {
		return err
	}
	q, err := queue.Open(opt.QueueDir)
	if err != nil {
		return err
	}
	defer q.Close()
	r, err := q.OpenRunner()
	if err != nil {
		return err
	}
	defer r.Close()
	os.MkdirAll(filepath.Join(opt.QueueDir, qctl.Dir), 0o750)
	s := newSender(opt, q, r, opt.Log, cfg)
	s.applyConfig(cfg)
	return s.loop()
}

// newSender is a Sender on queue q and its runner r, before its loop
// starts; Run and the tests make theirs here.
func newSender(opt Options, q *queue.Queue, r *queue.Runner, log *logline.Logger, cfg *Config) *Sender {
	return &Sender{opt: opt, q: q, r: r, log: log, cfg: cfg, now: now, pool: newPool(),
		dueAt: map[queue.ID]time.Time{}, flight: map[queue.ID]*inflight{}, waiting: map[string][]*job{},
		forced: map[queue.ID]bool{}, destOut: map[string]queue.Outcome{}, done: make(chan *job, 64), work: make(chan func()),
		ctlReqs: map[string]*ctlReq{}, transports: realTransports()}
}

func (s *Sender) config() *Config {
	s.cfgMu.RLock()
	defer s.cfgMu.RUnlock()
	return s.cfg
}

func (s *Sender) applyConfig(c *Config) {
	s.cfgMu.Lock()
	s.cfg = c
	s.cfgMu.Unlock()
	if c.DNSServer != "" {
		s.res = dns.New(c.DNSServer)
	} else {
		s.res = dns.FromEnv()
	}
	lim := c.limits()
	if s.dests == nil {
		s.dests = schedule.NewDests(lim)
	} else {
		s.dests.SetLimits(lim)
	}
}

// collectEvery is how often gw-send removes finished segments and looks
// at the queue and ctl/ without being woken: the bound on what a lost
// trigger byte costs.
const collectEvery = 5 * time.Minute

func (s *Sender) loop() error {
	msgs := s.r.Messages()
	s.log.Info("start", "queue", s.opt.QueueDir, "messages", len(msgs))
	// What the load refused is named now, and finished or damaged
	// segments go at once, not at the first tick.
	s.logSetAside()
	s.collect()
	for _, m := range msgs {
		s.afterCrash(&m)
		s.schedule(&m)
	}
	// A message committed while the runner read the queue, before it
	// listened to the trigger, pulled a trigger nobody heard.
	s.refresh()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	collect := time.NewTicker(collectEvery)
	defer collect.Stop()
	stopping := false
	var stopTimer <-chan time.Time
	s.serveCtl()
	for {
		if !stopping {
			s.dispatch()
		}
		s.pool.expire(s.now())
		if stopping && s.dests.Active() == 0 && len(s.flight) == 0 {
			s.pool.closeAll(2 * time.Second)
			err := s.r.Sync()
			s.log.Info("stop")
			return err
		}
		timer.Reset(s.nextWake())
		select {
		case <-s.r.Wake():
			// gw-qctl pulls the trigger ("!") with each request; a wake-up
			// that only says how far gw-queued flushed brings none, and
			// ctl/ is not listed for it.
			if s.refreshNoticed() {
				s.serveCtl()
			}
		case j := <-s.done:
			s.jobDone(j)
		case <-timer.C:
			s.serveCtl()
		case <-collect.C:
			s.refresh() // a lost trigger byte costs at most this long (qmail: 25 min)
			s.serveCtl()
			s.collect()
		case sig := <-s.opt.Signals:
			switch sig {
			case Reload:
				if c, err := ReadConfig(s.opt.ControlDir); err != nil {
					s.log.Warning("reload", "err", err)
				} else {
					s.applyConfig(c)
					s.log.Info("reload")
				}
			case RetryAll:
				s.log.Info("retryall")
				s.dests.Reset()
				for _, m := range s.r.Messages() {
					s.retryNow(m.ID)
				}
			case Stop:
				if !stopping {
					stopping = true
					s.log.Info("stopping", "inflight", s.dests.Active(), "waiting", s.abandonWaiting())
					stopTimer = time.After(s.opt.StopGrace)
				}
			}
		case <-stopTimer:
			for _, f := range s.flight {
				f.cancel()
			}
		}
	}
}

// abandonWaiting ends, undelivered, the jobs still in their destination's
// line when gw-send stops, and returns how many there were. Once stopping
// dispatch no longer runs, so they would never start, and their messages
// would stay in flight: the loop, which exits when nothing is in flight,
// would wait for them forever, far past the stop grace.
func (s *Sender) abandonWaiting() int {
	lines := s.waiting
	s.waiting = map[string][]*job{}
	n := 0
	for _, line := range lines {
		for _, j := range line {
			s.jobDone(j)
			n++
		}
	}
	return n
}

// refresh schedules the messages committed since the last look.
func (s *Sender) refresh() {
	fresh, err := s.r.Refresh()
	s.scheduleFresh(fresh, err)
}

// refreshNoticed is refresh for a wake-up (Runner.RefreshNoticed); it
// reports whether the trigger was pulled for more than a flushed length.
func (s *Sender) refreshNoticed() (pulled bool) {
	fresh, pulled, err := s.r.RefreshNoticed()
	s.scheduleFresh(fresh, err)
	return pulled
}

func (s *Sender) scheduleFresh(fresh []queue.Message, err error) {
	s.logSetAside()
	if err != nil {
		s.log.Warning("refresh", "err", err)
	}
	for _, m := range fresh {
		s.log.Info("new", "qid", m.ID, "from", m.Sender, "rcpts", len(m.Recipients), "size", m.Size)
		s.schedule(&m)
	}
}

// collect removes what is finished (Runner.Collect) and names what it set
// aside.
func (s *Sender) collect() {
	st, err := s.r.Collect()
	s.logSetAside()
	if err != nil {
		s.log.Warning("collect", "err", err)
	} else if st.Segments+st.SetAside+st.Leftovers > 0 {
		s.log.Info("collect", "segments", st.Segments, "setaside", st.SetAside, "leftovers", st.Leftovers)
	}
}

// logSetAside logs, one line a file, what the queue moved into bad/.
func (s *Sender) logSetAside() {
	for _, a := range s.q.TakeSetAside() {
		s.log.Warning("setaside", "file", a.File, "to", a.To, "reason", a.Reason)
	}
}

// nextWake is how long the loop may sleep: until the next message is due,
// a backoff ends or an idle session is to be closed, and otherwise until
// the periodic collect. Nothing else changes with time alone: new
// messages and gw-qctl's requests come with a trigger byte (gw-qctl
// pulls the trigger again each second it waits), so an idle gw-send does
// not wake on a tick.
func (s *Sender) nextWake() time.Duration {
	t := s.now()
	d := collectEvery
	soonest := func(at time.Time) {
		if w := at.Sub(t); w < d {
			d = w
		}
	}
	if len(s.due) > 0 {
		soonest(s.due[0].at)
	}
	if e, ok := s.dests.Earliest(t); ok {
		soonest(e)
	}
	if e, ok := s.pool.nextExpiry(); ok {
		soonest(e)
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// schedule files message m by its earliest pending recipient; a message
// with none is finished.
func (s *Sender) schedule(m *queue.Message) {
	if m.Held {
		delete(s.dueAt, m.ID)
		return
	}
	if m.Done() {
		s.finish(m.ID)
		return
	}
	s.boundNextTry(m)
	var at time.Time
	first := true
	for _, rc := range m.Recipients {
		if rc.State == queue.Pending && (first || rc.NextTry.Before(at)) {
			at, first = rc.NextTry, false
		}
	}
	s.makeDue(m.ID, at)
}

// retryNow makes message id due now, all its pending recipients included.
func (s *Sender) retryNow(id queue.ID) {
	s.forced[id] = true
	delete(s.dueAt, id)
	s.makeDue(id, time.Time{})
}

func (s *Sender) makeDue(id queue.ID, at time.Time) {
	if old, ok := s.dueAt[id]; ok && !at.Before(old) {
		return
	}
	s.dueAt[id] = at
	heap.Push(&s.due, dueEntry{at: at, id: id})
}

// dispatch starts what is due: jobs waiting for a destination first, then
// messages whose time has come.
func (s *Sender) dispatch() {
	t := s.now()
	for dest, line := range s.waiting {
		n := 0
		for n < len(line) && s.dests.CanStart(dest, line[n].kind(), t) {
			s.start(line[n])
			n++
		}
		if n == len(line) {
			delete(s.waiting, dest)
		} else {
			s.waiting[dest] = line[n:]
		}
	}
	for len(s.due) > 0 && !s.due[0].at.After(t) && !s.dests.Full() {
		e := heap.Pop(&s.due).(dueEntry)
		if at, ok := s.dueAt[e.id]; !ok || !at.Equal(e.at) {
			continue // stale entry
		}
		delete(s.dueAt, e.id)
		s.plan(e.id, t)
	}
}

// plan cuts message id's due recipients into jobs, one a destination, and
// starts them or puts them in their destination's line.
func (s *Sender) plan(id queue.ID, t time.Time) {
	m, err := s.r.Message(id)
	if err != nil || m.Held {
		return
	}
	if m.Done() {
		s.finish(id)
		return
	}
	s.boundNextTry(&m)
	f := s.flight[id]
	forced := s.forced[id]
	delete(s.forced, id)
	cfg := s.config()
	byDest := map[string]*job{}
	var order []*job
	var later time.Time
	for i, rc := range m.Recipients {
		if rc.State != queue.Pending || f != nil && f.rcpts[i] {
			continue
		}
		if !forced && rc.NextTry.After(t) {
			if later.IsZero() || rc.NextTry.Before(later) {
				later = rc.NextTry
			}
			continue
		}
		// One transaction a destination: recipients of several domains
		// that a route sends to one relay share it.
		domain := strings.ToLower(route.Domain(rc.Address))
		rt := cfg.Routes.Lookup(domain)
		dest := rt.Destination(domain)
		j := byDest[dest]
		if j == nil {
			j = &job{id: id, domain: domain, route: rt, dest: dest}
			byDest[dest] = j
			order = append(order, j)
		}
		j.rcpts = append(j.rcpts, i)
	}
	if !later.IsZero() {
		s.makeDue(id, later)
	}
	postponed := false
	for _, j := range order {
		s.claimJob(j)
		if forced {
			s.dests.Lift(j.dest) // gw-qctl retry: now, over the backoff
		}
		if s.dests.CanStart(j.dest, j.kind(), t) {
			s.start(j)
		} else {
			s.waiting[j.dest] = append(s.waiting[j.dest], j)
			postponed = s.postpone(j, t) || postponed
		}
	}
	if postponed {
		s.flushPostponed()
	}
}

// claimJob counts j against its message, claiming the message in the
// queue on its first job so that nothing else acts on it meanwhile.
func (s *Sender) claimJob(j *job) {
	f := s.flight[j.id]
	if f == nil {
		if _, err := s.r.Claim(j.id); err != nil {
			s.log.Warning("claim", "qid", j.id, "err", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		f = &inflight{rcpts: map[int]bool{}, ctx: ctx, cancel: cancel}
		s.flight[j.id] = f
	}
	f.jobs++
	for _, i := range j.rcpts {
		f.rcpts[i] = true
	}
	j.ctx = f.ctx
}

func (s *Sender) start(j *job) {
	s.dests.Start(j.dest, j.kind())
	j.started = true
	s.run(func() {
		s.deliver(j)
		s.done <- j
	})
}

func (s *Sender) jobDone(j *job) {
	if j.started {
		if j.reachable {
			delete(s.destOut, j.dest)
		} else {
			s.destOut[j.dest] = j.lastOut
		}
		if s.dests.Done(j.dest, j.reachable, s.now(), j.lastErr) {
			s.log.Warning("backoff", "dest", j.dest, "until", s.dests.Get(j.dest).Until.Format(time.RFC3339), "err", j.lastErr)
			s.expireWaiting(j.dest)
		}
	}
	f := s.flight[j.id]
	if f == nil {
		panic("send.jobDone: message " + j.id.String() + " not in flight")
	}
	for _, i := range j.rcpts {
		delete(f.rcpts, i)
	}
	f.jobs--
	if f.jobs > 0 {
		return
	}
	f.cancel()
	delete(s.flight, j.id)
	s.r.Unclaim(j.id)
	if len(f.after) > 0 {
		s.runCtl(j.id, f.after)
	}
	if j.finishing && j.lastErr != "" {
		s.makeDue(j.id, s.now().Add(time.Minute)) // finish failed: again later
		return
	}
	if m, err := s.r.Message(j.id); err == nil {
		s.schedule(&m)
	}
}

// dueHeap orders messages by due time.
type dueEntry struct {
	at time.Time
	id queue.ID
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

var errStopped = errors.New("delivery aborted (gw-send stopping or message removed)")
