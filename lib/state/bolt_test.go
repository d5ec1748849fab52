package state

import (
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestBoltWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	b := &Bolt{Path: filepath.Join(t.TempDir(), "rates.db"), Now: func() time.Time { return now }}
	for want := int64(1); want <= 3; want++ {
		n, reset, err := b.Count("k", time.Minute)
		if err != nil || n != want || !reset.Equal(time.Unix(1060, 0)) {
			t.Fatalf("count %d: %d, reset %v, %v", want, n, reset, err)
		}
	}
	now = now.Add(time.Minute)
	if n, _, _ := b.Count("k", time.Minute); n != 1 {
		t.Errorf("a new window starts at %d", n)
	}
	if err := b.Put("v", []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Get("v"); !ok || string(v) != "x" || err != nil {
		t.Errorf("Get = %q, %v, %v", v, ok, err)
	}
	now = now.Add(time.Second)
	if _, ok, _ := b.Get("v"); ok {
		t.Error("an expired value is still there")
	}
}

// TestBoltCountsAcrossHandles: the counts of one file, each operation
// opening and closing it as a tcpserver session does, from two handles
// (two flocks, as two processes hold) at once: every count that
// succeeded is seen exactly once, 1 to the number of them.
func TestBoltCountsAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rates.db")
	handles := []*Bolt{{Path: path}, {Path: path}}
	var mu sync.Mutex
	var seen []int64
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(b *Bolt) {
			defer wg.Done()
			n, _, err := b.Count("rl:msg:ip:127.0.0.1", time.Minute)
			if err != nil {
				return // the lock not had in time: the limiter counts in memory
			}
			mu.Lock()
			seen = append(seen, n)
			mu.Unlock()
		}(handles[i%2])
	}
	wg.Wait()
	if len(seen) < 2 {
		t.Fatalf("only %d counts succeeded", len(seen))
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
	for i, n := range seen {
		if n != int64(i+1) {
			t.Fatalf("counts seen %v: %d is not %d", seen, n, i+1)
		}
	}
}

// TestBoltLockHeld: another process holds the file; the count fails
// within about the lock timeout instead of waiting for it.
func TestBoltLockHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rates.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := &Bolt{Path: path}
	start := time.Now()
	if _, _, err := b.Count("k", time.Minute); err == nil {
		t.Fatal("counted in a file another holds")
	}
	if d := time.Since(start); d > 5*BoltLockTimeout {
		t.Errorf("waited %v for the lock", d)
	}
}

// TestBoltDistrustsItsFile: a counter of another shape, or with a window
// ending far past the rule's, starts a new window.
func TestBoltDistrustsItsFile(t *testing.T) {
	now := time.Unix(1000, 0)
	path := filepath.Join(t.TempDir(), "rates.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		bk, _ := tx.CreateBucketIfNotExists(bucketCounts)
		bk.Put([]byte("short"), []byte("x"))
		bk.Put([]byte("far"), encodeCount(99, now.Add(24*time.Hour)))
		return nil
	})
	db.Close()
	b := &Bolt{Path: path, Now: func() time.Time { return now }}
	for _, k := range []string{"short", "far"} {
		if n, reset, err := b.Count(k, time.Minute); err != nil || n != 1 || !reset.Equal(now.Add(time.Minute)) {
			t.Errorf("%s: %d, %v, %v", k, n, reset, err)
		}
	}
}

// FuzzBoltCounter: whatever bytes a counter holds in the file (another
// process, a damaged disk), counting on it never panics, and starts a new
// window unless the bytes are a counter within the rule's window.
func FuzzBoltCounter(f *testing.F) {
	f.Add(encodeCount(3, time.Unix(1030, 0)))
	f.Add([]byte("x"))
	f.Add(encodeCount(-1, time.Unix(1030, 0)))
	now := time.Unix(1000, 0)
	f.Fuzz(func(t *testing.T, v []byte) {
		path := filepath.Join(t.TempDir(), "rates.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			bk, _ := tx.CreateBucketIfNotExists(bucketCounts)
			return bk.Put([]byte("k"), v)
		})
		db.Close()
		b := &Bolt{Path: path, Now: func() time.Time { return now }}
		n, reset, err := b.Count("k", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if n < 1 || !now.Before(reset) || reset.After(now.Add(time.Minute)) {
			t.Fatalf("counter %x: count %d, reset %v", v, n, reset)
		}
	})
}
