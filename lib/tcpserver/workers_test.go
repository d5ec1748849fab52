package tcpserver

import (
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"gw/lib/logline"
)

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 20s (%d goroutines)", what, runtime.NumGoroutine())
		}
	}
}

// TestSessionGoroutinesKept: after a burst of sessions, at most
// maxIdleWorkers goroutines wait for the next connection, the next
// session runs on one of them (no goroutine more while it runs), and
// once Serve has returned none is left.
func TestSessionGoroutinesKept(t *testing.T) {
	base := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		running int
		release = make(chan struct{})
	)
	l := &Listener{Log: logline.New(io.Discard), Session: func(c net.Conn, _ func(string) (string, bool)) {
		defer c.Close()
		mu.Lock()
		running++
		r := release
		mu.Unlock()
		<-r
		io.WriteString(c, "done\n")
		mu.Lock()
		running--
		mu.Unlock()
	}}
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln, time.Minute) }()
	sessions := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				io.ReadAll(c)
			}()
		}
		waitFor(t, "all sessions running", func() bool { mu.Lock(); defer mu.Unlock(); return running == n })
		mu.Lock()
		close(release)
		release = make(chan struct{})
		mu.Unlock()
		wg.Wait()
		waitFor(t, "all sessions ended", func() bool { mu.Lock(); defer mu.Unlock(); return running == 0 })
	}

	sessions(2 * maxIdleWorkers)
	// the listener's accept loop, and the goroutines that wait
	waitFor(t, "down to the waiting goroutines", func() bool { return runtime.NumGoroutine() <= base+1+maxIdleWorkers })
	idle := runtime.NumGoroutine()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the next session running", func() bool { mu.Lock(); defer mu.Unlock(); return running == 1 })
	if n := runtime.NumGoroutine(); n > idle {
		t.Errorf("%d goroutines with one session on a waiting one, %d before it", n, idle)
	}
	mu.Lock()
	close(release)
	mu.Unlock()
	io.ReadAll(c)

	ln.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back to the goroutines before Serve", func() bool { return runtime.NumGoroutine() <= base })
}
