package inject

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/qq"
	"gw/lib/queue"
)

func newQueue(t testing.TB) *queue.Queue {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "queue")
	if err := queue.Init(dir); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestDate822(t *testing.T) {
	got := Date822(time.Date(2026, 11, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)))
	if want := "2 Nov 2026 02:04:05 -0000"; got != want {
		t.Errorf("Date822 = %q, want %q", got, want)
	}
}

func TestStreamCodes(t *testing.T) {
	q := newQueue(t)
	cases := []struct {
		name string
		env  string
		code int
	}{
		{"queued", "Fa@example.org\x00Tb@example.net\x00\x00", qq.OK},
		{"truncated envelope", "Fa@example.org\x00Tb@example.net\x00", qq.ReadError},
		{"no envelope", "", qq.ReadError},
		{"bad envelope", "Xa\x00\x00", qq.BadEnvelope},
		{"address too long", "F" + strings.Repeat("a", 1003) + "\x00\x00", qq.AddressTooLong},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := q.Snapshot()
			_, err := Stream(q, 1, 2, Trace("gw-queue", 2, 1, time.Now()), strings.NewReader("Subject: t\n\nbody\n"), strings.NewReader(c.env))
			if got := Code(err); got != c.code {
				t.Fatalf("envelope %q: code %d (%v), want %d", c.env, got, err, c.code)
			}
			after, _ := q.Snapshot()
			added := len(after.Messages) - len(before.Messages)
			if want := map[bool]int{true: 1, false: 0}[c.code == 0]; added != want || after.InProgress != 0 {
				t.Errorf("envelope %q: %d messages added, %d in progress; want %d, 0", c.env, added, after.InProgress, want)
			}
		})
	}
}

// serve starts a Server on a socket in a temporary directory.
func serve(t *testing.T, q *queue.Queue) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "inject.sock")
	l, err := Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c := q.NewCommitter()
	s := &Server{Queue: q, Committer: c, Log: logline.New(io.Discard), Program: "gw-queued"}
	done := make(chan struct{})
	go func() { s.Serve(l); c.Close(); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return sock
}

func TestServerConcurrentClients(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	const clients, each = 8, 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := make(map[string]string) // recipient → body
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl, err := Dial(sock)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			for k := 0; k < each; k++ {
				size := []int{10, 5000, 200 << 10, queue.MaxIncoming + 1000}[k%4]
				body := fmt.Sprintf("Subject: %d-%d\n\n%s", i, k, bytes.Repeat([]byte{'a' + byte(k%26)}, size))
				rcpt := fmt.Sprintf("c%d-%d@example.net", i, k)
				code, err := cl.Inject(strings.NewReader(body), envelope.Envelope{Sender: "s@example.org", Recipients: []string{rcpt}})
				if err != nil || code != 0 {
					t.Errorf("client %d message %d: code %d, %v", i, k, code, err)
					return
				}
				mu.Lock()
				sent[rcpt] = body
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != clients*each {
		t.Fatalf("%d messages queued, want %d", len(snap.Messages), clients*each)
	}
	for _, m := range snap.Messages {
		rc, err := q.OpenBody(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := sent[m.Recipients[0].Address]
		trace, rest, _ := bytes.Cut(got, []byte("\n"))
		if !bytes.HasPrefix(trace, []byte("Received: (gw-queued ")) || string(rest) != want {
			t.Fatalf("message %s: stored %d bytes, trace %q; want the trace then %d bytes sent", m.ID, len(got), trace, len(want))
		}
	}
}

func TestServerAbortQueuesNothing(t *testing.T) {
	q := newQueue(t)
	sock := serve(t, q)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// One chunk, then the envelope without its final NUL, then hang up.
	c.Write([]byte{0, 0, 0, 5})
	c.Write([]byte("hello\x00\x00\x00\x00Fa@b\x00Tc@d\x00"))
	c.Close()
	time.Sleep(100 * time.Millisecond)
	snap, _ := q.Snapshot()
	if len(snap.Messages) != 0 {
		t.Errorf("an aborted message was queued")
	}
	// A client refused for its envelope gets the permanent code and
	// nothing is queued.
	cl, _ := Dial(sock)
	defer cl.Close()
	code, err := cl.Inject(strings.NewReader("x"), envelope.Envelope{Sender: "a\nb"})
	if err != nil || code != qq.BadAddress {
		t.Errorf("bad envelope: code %d, %v; want %d", code, err, qq.BadAddress)
	}
}

// TestShutdownEndsIdleSessions: a listener's pooled connection waiting
// between messages does not keep gw-queued from stopping.
func TestShutdownEndsIdleSessions(t *testing.T) {
	q := newQueue(t)
	sock := filepath.Join(t.TempDir(), "inject.sock")
	l, err := Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c := q.NewCommitter()
	defer c.Close()
	s := &Server{Queue: q, Committer: c, Log: logline.New(io.Discard), Program: "gw-queued"}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	cl, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if code, err := cl.Inject(strings.NewReader("Subject: x\n\n"), envelope.Envelope{Sender: "a@b", Recipients: []string{"c@d"}}); code != 0 || err != nil {
		t.Fatalf("inject: %d, %v", code, err)
	}
	l.Close()
	s.Shutdown()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still waits on an idle session after Shutdown")
	}
}
