package tests

// The crash suite proves the queue's first promise (ARCHITECTURE.md:
// "Nothing accepted is lost"): an injector killed at any step of its commit
// protocol, a full disk, or a flush that fails never loses a message it
// acknowledged, and never lets a partial message be listed or delivered.
// "Delivered" is what the runner reads: OpenRunner, Messages, Body.

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/inject"
	"gw/lib/qq"
)

// TestCrashQueueKillEachStep kills gw-queue at every syscall of its commit
// protocol, for a small, a large and a huge message. A dry run under
// strace lists its syscalls; then, for each one from the
// creation of the segment to exit_group, a fresh gw-queue runs under
// strace -e inject=<syscall>:signal=KILL:when=<n>, which kills it on
// entering that call, before the kernel runs it:
//
//	openat tmp/ID (O_EXCL)  nothing exists yet: nothing may be listed
//	write #k                the file in tmp/ ends inside the record (the
//	                        sweep "killed after the (k-1)th write"): an
//	                        injection in progress, never listed
//	fdatasync, close        every byte is written, not yet renamed: still
//	                        an injection in progress, never listed
//	rename tmp/ID seg/ID    the commit point, as qmail's link intd → todo
//	openat seg, fsync,      renamed, directory entry being flushed: listed,
//	close                   complete
//	openat/write/close      trigger pulled or not: listed, complete; the
//	  lock/trigger          runner finds it on its next scan anyway
//	write stderr,           the message is durable, gw-queue dies before
//	exit_group              saying so: listed, complete (qmail's window)
//
// After each kill every acknowledged message is listed and reads back
// whole, the killed one is listed exactly when its rename ran, and the
// files it left in tmp/ count as injections in progress, never as messages or
// corruption. At the end a fresh injection works, and the runner's
// Collect removes the dead injections' leftovers once they are older than
// queue.Ossified.
func TestCrashQueueKillEachStep(t *testing.T) {
	need(t, "strace")
	dir, qdir := newCrashQueue(t)
	// Hold the trigger's read end, as a runner does, so that gw-queue's
	// pull of the trigger gets as far as its write.
	trig, err := os.OpenFile(filepath.Join(qdir, "lock", "trigger"), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer trig.Close()
	drain := func() {
		buf := make([]byte, 4096)
		for {
			if n, _ := trig.Read(buf); n <= 0 {
				return
			}
		}
	}

	l := newLedger()
	rng := rand.New(rand.NewSource(1))
	kills, leftovers := 0, 0
	for _, size := range []int{sizeSmall, sizeLarge, sizeHuge} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			dry := l.add("dry", size, rng)
			dryLog := filepath.Join(dir, fmt.Sprintf("dry-%d.strace", size))
			if code, stderr := injectQueue(t, qdir, l, dry, straceWrap(t, dryLog)...); code != 0 {
				t.Fatalf("dry run: exit %d\n%s", code, stderr)
			}
			protocol, lastWrite := commitSteps(t, logSteps(t, dryLog))
			t.Logf("%d steps from the segment's creation to exit %v; the message is queued after step %d (%s)",
				len(protocol), protocol, lastWrite, protocol[lastWrite])
			for i, s := range protocol {
				// A kill that lands elsewhere (the goroutine changed
				// threads, so strace's per-thread count differs) is
				// checked for what it did, and the step is tried again.
				for attempt := 1; ; attempt++ {
					m := l.add("kill", size, rng)
					log := filepath.Join(dir, fmt.Sprintf("kill-%d-%02d-%d.strace", size, i, attempt))
					code, stderr := injectQueue(t, qdir, l, m, straceWrap(t, log, s.inject()...)...)
					drain()
					ran, at := logLanding(t, log, s.name)
					landed := ran[at]
					whole, partial := code == 0, false
					switch code {
					case 0:
						landed = step{name: "none", what: "not killed"}
					case -1:
						// Everything before the step it landed on ran.
						done := ran[:at]
						whole = segCommitted(done)
						partial = segCreated(done) && !whole
						kills++
					default:
						t.Errorf("kill at %s: exit %d, want killed\n%s", s, code, stderr)
					}
					if partial {
						leftovers++ // a segment that ends inside the record
					}
					st := checkQueue(t, qdir, l)
					if st.listed[m.rcpt] != whole {
						t.Errorf("killed at %s: listed %v, want %v (the record is whole after %s)",
							landed, st.listed[m.rcpt], whole, protocol[lastWrite])
					}
					if st.inProgress != leftovers {
						t.Errorf("killed at %s: %d injections in progress, want %d", landed, st.inProgress, leftovers)
					}
					if landed == s {
						if want := i > lastWrite; whole != want {
							t.Errorf("killed at %s: message whole %v, want %v", s, whole, want)
						}
						break
					}
					t.Logf("kill meant at %s landed at %s", s, landed)
					if attempt == 5 {
						t.Errorf("kill at %s: landed elsewhere %d times", s, attempt)
						break
					}
				}
			}
		})
	}
	t.Logf("%d kills, %d messages acknowledged, %d leftovers", kills, l.acked(), leftovers)

	// The queue keeps working.
	after := l.add("after", sizeLarge, rng)
	if code, stderr := injectQueue(t, qdir, l, after); code != 0 {
		t.Fatalf("injection after the kills: exit %d\n%s", code, stderr)
	}
	// A day and a half later the runner removes what the dead injections
	// left, and nothing else.
	ossify(t, qdir)
	if st := collect(t, qdir, nil); st.Leftovers != leftovers || st.Segments != 0 {
		t.Errorf("collect removed %d leftovers and %d segments, want %d and 0", st.Leftovers, st.Segments, leftovers)
	}
	if st := checkQueue(t, qdir, l); st.inProgress != 0 || !st.listed[after.rcpt] {
		t.Errorf("after collect: %d in progress, new message listed %v", st.inProgress, st.listed[after.rcpt])
	}
}

// queuedKill is one way to kill gw-queued in TestCrashQueuedKill: after a
// random delay, or under strace on entering the nth call of a syscall.
type queuedKill struct {
	name    string
	syscall string // "": SIGKILL from the test after a random delay
	nth     int
	budget  string // gw-queued's --budget; "": its default
}

// TestCrashQueuedKill kills gw-queued while 16 clients inject into it
// concurrently, so that batches are being received, written, flushed and
// acknowledged at the moment of death:
//
//	random moment        anywhere: reading a message, in writev, in
//	                     fdatasync, between flush and acknowledgement
//	writev #n            a batch was being appended: none of it is written
//	fdatasync #n         a batch is written, not flushed, not acknowledged:
//	                     listed and whole (S2), or absent; never partial
//	fsync #1             a new segment's directory entry being flushed
//	write #n             a huge message streamed to its own segment, or an
//	                     acknowledgement on its way to a client
//	spill-…              the same with the memory budget spent (--budget 1:
//	                     every message goes to a segment of its own, or
//	                     64 KiB: some do), killed at random, as a spilled
//	                     message is flushed (fdatasync), as its name
//	                     appears (renameat2) and as seg/ is flushed (fsync)
//
// strace counts calls per thread, and gw-queued's committer moves between
// threads, so "#n" is the nth call of some thread; what matters is that the
// kill lands on that syscall with batches in flight. After each kill:
// every message whose client got 0 is listed and reads back exactly,
// nothing listed is partial; then gw-queued restarts on the same queue and
// takes more. Finally the runner removes the dead segments' leftovers.
func TestCrashQueuedKill(t *testing.T) {
	straceBin := need(t, "strace")
	dir, qdir := newCrashQueue(t)
	sock := filepath.Join(dir, "inject.sock")
	l := newLedger()
	rounds := []queuedKill{
		{name: "random-1"}, {name: "random-2"}, {name: "random-3"}, {name: "random-4"}, {name: "random-5"},
		{"writev-3", "writev", 3, ""},
		{"fdatasync-2", "fdatasync", 2, ""},
		{"fdatasync-7", "fdatasync", 7, ""},
		{"fsync-1", "fsync", 1, ""},
		{"write-20", "write", 20, ""},
		{name: "spill-random", budget: "1"},
		{name: "spill-some-random", budget: "65536"},
		{"spill-fdatasync-3", "fdatasync", 3, "1"},
		{"spill-renameat2-3", "renameat2", 3, "1"},
		{"spill-fsync-3", "fsync", 3, "1"},
	}
	for i, round := range rounds {
		t.Run(round.name, func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(i + 1)))
			var wrap []string
			if round.syscall != "" {
				// No --seccomp-bpf: with it strace 6.1 ignores when=.
				wrap = []string{straceBin, "-f", "-qq", "-o", "/dev/null",
					"-e", "trace=" + round.syscall,
					"-e", fmt.Sprintf("inject=%s:signal=KILL:when=%d", round.syscall, round.nth)}
			}
			var flags []string
			if round.budget != "" {
				flags = []string{"--budget", round.budget}
			}
			s := startQueuedFlags(t, qdir, sock, wrap, flags...)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[int]int{}
			for c := 0; c < 16; c++ {
				crng := rand.New(rand.NewSource(rng.Int63()))
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, err := inject.Dial(sock)
					if err != nil {
						return
					}
					defer cl.Close()
					// A cap keeps the check after the kill short; strace
					// rounds need messages until their syscall comes.
					for n := 0; n < 100 || round.syscall != ""; n++ {
						select {
						case <-stop:
							return
						default:
						}
						size := sizeSmall
						switch p := crng.Intn(100); {
						case p < 2:
							size = sizeHuge
						case p < 20:
							size = sizeLarge
						}
						code := injectQueued(cl, l, l.add(round.name, size, crng))
						mu.Lock()
						codes[code]++
						mu.Unlock()
						if code != 0 {
							return // the server is gone, or refused
						}
					}
				}()
			}
			if round.syscall == "" {
				time.Sleep(time.Duration(50+rng.Intn(450)) * time.Millisecond)
				s.kill()
			} else {
				select {
				case <-s.done:
				case <-time.After(20 * time.Second):
					t.Errorf("strace never killed gw-queued at %s #%d", round.syscall, round.nth)
					s.kill()
				}
			}
			close(stop)
			wg.Wait()
			if !s.killed() {
				t.Errorf("gw-queued was not killed: %v\n%s", s.err, tail(s.stderr.String(), 5))
			}
			for code := range codes {
				if code != 0 && code != -1 {
					t.Errorf("a client got code %d; want 0, or no answer from a dead server", code)
				}
			}
			st := checkQueue(t, qdir, l)
			t.Logf("killed with %d messages acknowledged, %d without an answer; %d listed whole unacknowledged so far (S2)",
				codes[0], codes[-1], st.unacked)

			// Restarted on the same queue, gw-queued takes more.
			s = startQueued(t, qdir, sock)
			cl, err := inject.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{sizeSmall, sizeLarge, sizeSmall} {
				m := l.add(round.name+"-after", size, rng)
				if code := injectQueued(cl, l, m); code != 0 {
					t.Errorf("after restart: code %d, want 0", code)
				}
			}
			cl.Close()
			s.stop(t)
			checkQueue(t, qdir, l)
		})
	}
	ossify(t, qdir)
	collect(t, qdir, nil)
	if st := checkQueue(t, qdir, l); st.inProgress != 0 {
		t.Errorf("after collect: %d injections in progress, want 0", st.inProgress)
	}
	t.Logf("%d rounds, %d messages acknowledged and checked", len(rounds), l.acked())
}

// TestCrashDiskFull fills a small tmpfs, mounted in a private mount
// namespace so the test needs no spare disk and touches no other mount,
// through gw-queue and through gw-queued: both must answer 53 (qmail-queue's
// "write error or disk full", temporary), leave nothing partial, keep
// every message they acknowledged, and work again once the runner has
// removed messages and collected their segments.
//
// The runner is opened before the disk fills, as gw-send runs all along:
// XXX a runner started on a disk full to the last block cannot open (its
// journal compaction needs a block), and Collect must flush the journal
// before it removes anything; this test frees space with a runner whose
// journal still has room in its last block. A reserve that injectors
// leave free (Postfix's queue_minfree) would close the gap.
//
// The namespace is held by a sleeping process; the test reaches the tmpfs
// through /proc/PID/root, so the programs under test run unchanged.
func TestCrashDiskFull(t *testing.T) {
	unshare := need(t, "unshare")
	dir := workDir(t)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	flags := "-m"
	if os.Geteuid() != 0 {
		flags = "-rm" // a user namespace lets a non-root user mount a tmpfs
	}
	holder := exec.Command(unshare, flags, "sh", "-c",
		`mount -t tmpfs -o size=8m gw-crash "$1" && echo ready && exec sleep 600`, "sh", mnt)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if n, _ := out.Read(buf); string(buf[:n]) != "ready\n" {
		holder.Process.Kill()
		holder.Wait()
		t.Fatalf("unshare %s: could not mount a tmpfs on %s", flags, mnt)
	}
	root := fmt.Sprintf("/proc/%d/root%s", holder.Process.Pid, mnt)
	qdir := filepath.Join(root, "queue")
	t.Cleanup(func() {
		if t.Failed() { // the tmpfs goes with its namespace: keep a copy
			exec.Command("cp", "-a", qdir, filepath.Join(dir, "queue")).Run()
		}
		holder.Process.Kill()
		holder.Wait()
	})
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is not the tmpfs (statfs %v, type %x)", root, err, fs.Type)
	}
	initQueue(t, qdir)
	l := newLedger()
	rng := rand.New(rand.NewSource(3))
	runner, closeRunner := openRunner(t, qdir)

	// gw-queue: large messages until the disk is full, then a huge one and
	// a small one, which must be refused or fit whole.
	full := false
	for i := 0; i < 200 && !full; i++ {
		code, stderr := injectQueue(t, qdir, l, l.add("queue", sizeLarge, rng))
		switch code {
		case 0:
		case qq.WriteError:
			full = true
		default:
			t.Fatalf("gw-queue on a filling disk: exit %d, want 0 or %d\n%s", code, qq.WriteError, stderr)
		}
	}
	if !full {
		t.Fatalf("gw-queue never reported the disk full")
	}
	for _, size := range []int{sizeHuge, sizeSmall} {
		m := l.add("queue", size, rng)
		if code, stderr := injectQueue(t, qdir, l, m); code != 0 && code != qq.WriteError {
			t.Errorf("gw-queue, %d bytes on a full disk: exit %d\n%s", size, code, stderr)
		}
	}
	if st := checkListing(t, qdir, l); st.inProgress != 0 {
		t.Errorf("disk full: gw-queue left %d partial segments", st.inProgress)
	}
	t.Logf("gw-queue: disk full after %d messages", l.acked())

	// gw-queued: a huge message (streamed to a segment of its own), then
	// large ones until refused; every answer must be a real one, and the
	// connection stays usable after a refusal.
	s := startQueued(t, qdir, filepath.Join(dir, "inject.sock"))
	cl, err := inject.Dial(s.socket)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i, size := range append([]int{sizeHuge, sizeSmall}, repeat(sizeLarge, 40)...) {
		code := injectQueued(cl, l, l.add("queued", size, rng))
		switch code {
		case 0:
		case qq.WriteError:
			refused++
		default:
			t.Fatalf("gw-queued, message %d (%d bytes) on a full disk: code %d, want 0 or %d\n%s",
				i, size, code, qq.WriteError, tail(s.stderr.String(), 5))
		}
		if refused >= 3 {
			break
		}
	}
	cl.Close()
	if refused < 3 {
		t.Errorf("gw-queued refused %d messages on a full disk, want 3", refused)
	}
	if st := checkListing(t, qdir, l); st.inProgress != 0 {
		t.Errorf("disk full: gw-queued left %d partial segments", st.inProgress)
	}

	// Free space: the runner removes the gw-queue messages (a segment each)
	// and collects their segments.
	if _, err := runner.Refresh(); err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, m := range runner.Messages() {
		if strings.HasPrefix(m.Recipients[0].Address, "queue-") {
			if err := runner.Remove(m.ID); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	st, err := runner.Collect()
	if err != nil || st.Segments != removed {
		t.Fatalf("collect on a full disk: %d segments removed (%v), want %d", st.Segments, err, removed)
	}
	closeRunner()
	l.forget(func(rcpt string) bool { return strings.HasPrefix(rcpt, "queue-") })

	// Both injectors work again.
	for _, size := range []int{sizeLarge, sizeHuge} {
		if code, stderr := injectQueue(t, qdir, l, l.add("again", size, rng)); code != 0 {
			t.Errorf("gw-queue after space was freed: exit %d\n%s", code, stderr)
		}
	}
	cl, err = inject.Dial(s.socket)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{sizeSmall, sizeLarge, sizeHuge} {
		if code := injectQueued(cl, l, l.add("again-queued", size, rng)); code != 0 {
			t.Errorf("gw-queued after space was freed: code %d\n%s", code, tail(s.stderr.String(), 5))
		}
	}
	cl.Close()
	s.stop(t)
	if st := checkQueue(t, qdir, l); st.inProgress != 0 {
		t.Errorf("after freeing space: %d partial segments", st.inProgress)
	}
	t.Logf("%d gw-queued refusals; %d messages removed to free space; %d acknowledged messages checked",
		refused, removed, l.acked())
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestCrashFsyncEIO makes the flushes fail as a dying disk does (EIO,
// injected by strace): the file's fdatasync and the seg directory's fsync
// of gw-queue, then gw-queued's batch fdatasync and a new segment's
// directory fsync. The injector must answer 53 (temporary), list nothing of
// the refused message (gw-queue removes its file; gw-queued cuts its
// segment back to before the batch), and take the next message.
func TestCrashFsyncEIO(t *testing.T) {
	straceBin := need(t, "strace")
	dir, qdir := newCrashQueue(t)
	l := newLedger()
	rng := rand.New(rand.NewSource(4))

	for _, call := range []string{"fdatasync", "fsync"} {
		for _, size := range []int{sizeSmall, sizeHuge} {
			m := l.add("eio-"+call, size, rng)
			code, stderr := injectQueue(t, qdir, l, m, straceBin, "-f", "-qq", "-o", "/dev/null",
				"-e", "trace="+call, "-e", "inject="+call+":error=EIO")
			if code != qq.WriteError {
				t.Errorf("gw-queue, %s fails with EIO, %d bytes: exit %d, want %d\n%s", call, size, code, qq.WriteError, stderr)
			}
			st := checkQueue(t, qdir, l)
			if st.listed[m.rcpt] || st.inProgress != 0 {
				t.Errorf("gw-queue, %s failed: message listed %v, %d partial segments; want neither", call, st.listed[m.rcpt], st.inProgress)
			}
			if code, stderr := injectQueue(t, qdir, l, l.add("ok", size, rng)); code != 0 {
				t.Errorf("gw-queue after a failed %s: exit %d\n%s", call, code, stderr)
			}
		}
	}

	// gw-queued: the second flush of a thread fails (strace counts per
	// thread), the others succeed, so refusals and acceptances interleave
	// on one connection.
	for _, c := range []struct{ call, when string }{{"fdatasync", "2"}, {"fsync", "1"}} {
		t.Run("queued-"+c.call, func(t *testing.T) {
			s := startQueued(t, qdir, filepath.Join(dir, "inject.sock"), straceBin, "-f", "-qq",
				"-o", "/dev/null", "-e", "trace="+c.call, "-e", "inject="+c.call+":error=EIO:when="+c.when)
			cl, err := inject.Dial(s.socket)
			if err != nil {
				t.Fatal(err)
			}
			var refused []*sent
			okAfter := 0
			for i := 0; i < 40; i++ {
				size := sizeSmall
				if i%10 == 5 {
					size = sizeHuge
				}
				m := l.add("queued-"+c.call, size, rng)
				switch code := injectQueued(cl, l, m); code {
				case 0:
					if len(refused) > 0 {
						okAfter++
					}
				case qq.WriteError:
					refused = append(refused, m)
				default:
					t.Fatalf("gw-queued, %s fails: code %d, want 0 or %d\n%s", c.call, code, qq.WriteError, tail(s.stderr.String(), 5))
				}
			}
			cl.Close()
			s.stop(t)
			if len(refused) == 0 || okAfter == 0 {
				t.Errorf("gw-queued, %s fails: %d refused, %d accepted after a refusal; want some of each", c.call, len(refused), okAfter)
			}
			st := checkQueue(t, qdir, l)
			for _, m := range refused {
				if st.listed[m.rcpt] {
					t.Errorf("gw-queued: refused message %s is listed", m.rcpt)
				}
			}
			if st.inProgress != 0 {
				t.Errorf("gw-queued: %d partial segments after failed flushes", st.inProgress)
			}
			t.Logf("%s: %d refused with 53, %d accepted after a refusal", c.call, len(refused), okAfter)
		})
	}
	t.Logf("%d messages acknowledged and checked", l.acked())
}
