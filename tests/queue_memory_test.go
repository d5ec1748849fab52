package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gw/lib/envelope"
	"gw/lib/inject"
)

// memoryBound is what gw-queued may reach with 200 clients sending 1 MB
// messages at once: 64 MiB for the program, its sessions' buffers and the
// collector's slack, plus its memory budget of message bytes
// (inject.DefaultBudget, 32 MiB). Before the budget it took 334 to 555 MiB.
const memoryBound = 64<<20 + inject.DefaultBudget

// TestQueuedMemoryBudget: 200 listeners each send gw-queued a 1 MB message
// at the same moment. Every one is acknowledged and listed whole, and
// gw-queued's peak resident memory (VmHWM) stays under memoryBound: the
// messages past the budget went to segments of their own.
func TestQueuedMemoryBudget(t *testing.T) {
	dir, qdir := newCrashQueue(t)
	sock := filepath.Join(dir, "inject.sock")
	s := startQueued(t, qdir, sock)
	const clients = 200
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstu\n"), 1000000/32)
	var clientsUp, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		clientsUp.Add(1)
		done.Add(1)
		go func(i int) {
			defer done.Done()
			c, err := inject.Dial(sock)
			clientsUp.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			<-start
			env := envelope.Envelope{Sender: "big@sender.example", Recipients: []string{fmt.Sprintf("r%d@example.com", i)}}
			if code, err := c.Inject(bytes.NewReader(body), env); code != 0 || err != nil {
				errs <- fmt.Errorf("client %d: code %d, %v", i, code, err)
			}
		}(i)
	}
	clientsUp.Wait()
	close(start)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	hwm := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("gw-queued's peak RSS with %d clients of 1 MB: %.1f MiB (bound %d MiB)", clients, float64(hwm)/(1<<20), memoryBound>>20)
	if hwm > memoryBound {
		t.Errorf("gw-queued's peak RSS %.1f MiB, over %d MiB", float64(hwm)/(1<<20), memoryBound>>20)
	}
	snap := snapshot(t, qdir)
	if len(snap.Messages) != clients {
		t.Fatalf("%d messages listed, want %d", len(snap.Messages), clients)
	}
	in := &smtpdInstance{queue: qdir}
	for _, m := range snap.Messages[:5] { // whole, whichever way they went
		if got := in.body(t, m); !strings.HasSuffix(got, string(body)) {
			t.Errorf("message %s: %d bytes stored, want the trace and %d", m.ID, len(got), len(body))
		}
	}
	s.stop(t)
}

// vmHWM returns a process's peak resident memory in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
