package state

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/control"
)

func TestMemoryWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	m := &Memory{Now: func() time.Time { return now }}
	for want := int64(1); want <= 3; want++ {
		if n, reset, _ := m.Count("k", time.Minute); n != want || !reset.Equal(time.Unix(1060, 0)) {
			t.Fatalf("count %d: %d, reset %v", want, n, reset)
		}
	}
	now = now.Add(time.Minute)
	if n, _, _ := m.Count("k", time.Minute); n != 1 {
		t.Errorf("a new window starts at %d", n)
	}
	m.Put("v", []byte("x"), time.Second)
	if v, ok, _ := m.Get("v"); !ok || string(v) != "x" {
		t.Errorf("Get = %q, %v", v, ok)
	}
	now = now.Add(time.Second)
	if _, ok, _ := m.Get("v"); ok {
		t.Error("an expired value is still there")
	}
}

// redisServer runs a real redis-server on a loopback port, no
// persistence, for the test.
func redisServer(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (scripts/test-peers.sh)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("redis-server does not listen")
	return "", nil
}

// TestRedisCountsAtomically: two hosts (two clients) counting one key at
// once never lose or double a count.
func TestRedisCountsAtomically(t *testing.T) {
	addr, srv := redisServer(t)
	a, err := OpenRedis("redis://"+addr+"/0", "", "t:", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OpenRedis("redis://"+addr+"/0", "", "t:", nil)
	defer a.Close()
	defer b.Close()
	seen := make(chan int64, 200)
	var wg sync.WaitGroup
	for _, r := range []*Redis{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				n, reset, err := r.Count("k", time.Minute)
				if err != nil || time.Until(reset) > time.Minute || time.Until(reset) < 50*time.Second {
					t.Errorf("Count: %d %v %v", n, reset, err)
				}
				seen <- n
			}
		}()
	}
	wg.Wait()
	close(seen)
	got := map[int64]bool{}
	for n := range seen {
		if got[n] {
			t.Fatalf("count %d seen twice", n)
		}
		got[n] = true
	}
	if len(got) != 200 || !got[200] {
		t.Errorf("%d distinct counts, want 1..200", len(got))
	}
	if ok, err := a.Greylist("192.0.2.0/24", "trip", 2*time.Second, time.Hour, time.Hour); ok || err != nil {
		t.Errorf("first try: %v %v", ok, err)
	}
	if ok, _ := b.Greylist("192.0.2.0/24", "trip", 2*time.Second, time.Hour, time.Hour); ok {
		t.Error("early retry at the other host passed")
	}
	srv.Process.Kill()
	srv.Wait()
	if _, _, err := a.Count("k", time.Minute); !errors.Is(err, ErrDown) {
		t.Errorf("server gone: %v, want ErrDown", err)
	}
	if _, err := OpenRedis("redis://:secret@"+addr+"/0", "", "t:", nil); err == nil {
		t.Error("a password in the URL was taken")
	}
}

// TestStateBackendCA: control/statebackendca is for rediss:// only, and
// a file with no certificate in it is refused, not taken as "use the
// system's roots".
func TestStateBackendCA(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("empty.pem", "not a certificate\n")
	write("statebackend", "rediss://localhost:6379/0\n")
	write("statebackendca", filepath.Join(dir, "empty.pem")+"\n")
	if _, err := Load(control.Dir(dir), nil); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a CA file with no certificate: %v", err)
	}
	write("statebackendca", filepath.Join(dir, "missing.pem")+"\n")
	if _, err := Load(control.Dir(dir), nil); err == nil || !strings.Contains(err.Error(), "control/statebackendca") {
		t.Errorf("a missing CA file: %v", err)
	}
	if _, err := OpenRedisTLS("redis://localhost:6379/0", "", "t:", x509.NewCertPool(), nil); err == nil {
		t.Error("a CA for plain redis:// was taken")
	}
	r, err := OpenRedisTLS("rediss://localhost:6379/0", "", "t:", x509.NewCertPool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
