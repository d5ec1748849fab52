package acl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCacheSeesEachNewDatabase: a lookup after gw-tcprules replaced the
// database answers from the new rules, as tcpserver's open a connection
// does; a missing database is an error, not the old rules.
func TestCacheSeesEachNewDatabase(t *testing.T) {
	dir := t.TempDir()
	db, tmp := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp")
	build := func(rules string) {
		t.Helper()
		if err := Build(strings.NewReader(rules), db, tmp, nil); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cache{Path: db}
	defer c.Close()
	for i, rules := range []string{"1.2.3.4:deny\n", "1.2.3.4:allow,V=\"a\"\n", "1.2.3.:allow,V=\"b\"\n:deny\n"} {
		build(rules)
		d, err := c.Lookup(Remote{IP: "1.2.3.4"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"deny", "allow V=a", "allow V=b"}[i]
		got := "deny"
		if !d.Deny {
			got = "allow"
			for _, kv := range d.Assignments() {
				got += " " + kv[0] + "=" + kv[1]
			}
		}
		if got != want {
			t.Errorf("rule set %d: %q, want %q", i, got, want)
		}
	}
	c2 := &Cache{Path: filepath.Join(dir, "missing.db")}
	if _, err := c2.Lookup(Remote{IP: "1.2.3.4"}); err == nil {
		t.Errorf("lookup in a missing database succeeded")
	}
}

// TestCacheUnderSwaps: lookups from many goroutines while the database is
// replaced in a loop each answer from one whole rule set: rule set k
// gives both variables the value k.
func TestCacheUnderSwaps(t *testing.T) {
	dir := t.TempDir()
	db, tmp := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp")
	rules := func(k int) string {
		return fmt.Sprintf("10.0.0.1:allow,A=\"%d\",B=\"%d\"\n10.0.0.:deny\n", k, k)
	}
	if err := Build(strings.NewReader(rules(0)), db, tmp, nil); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Path: db}
	defer c.Close()
	var stop atomic.Bool
	var lookups atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d, err := c.Lookup(Remote{IP: "10.0.0.1"})
				if err != nil {
					t.Error(err)
					return
				}
				env := d.Assignments()
				if d.Deny || len(env) != 2 || env[0][1] != env[1][1] {
					t.Errorf("mixed or wrong answer: deny=%v %v", d.Deny, env)
					return
				}
				lookups.Add(1)
			}
		}()
	}
	for k := 1; k <= 50; k++ {
		if err := Build(strings.NewReader(rules(k)), db, tmp, nil); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if lookups.Load() == 0 {
		t.Fatal("no lookup ran")
	}
}

// TestLockedDatabaseFailsAtOnce: another process's exclusive flock on the
// database makes a lookup fail at once with ErrLocked, not wait for it.
func TestLockedDatabaseFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	db, tmp := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp")
	if err := Build(strings.NewReader(":allow\n"), db, tmp, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Path: db}
	defer c.Close()
	start := time.Now()
	_, err = c.Lookup(Remote{IP: "1.2.3.4"})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("lookup in a locked database: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("lookup waited %v for the lock", d)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if _, err := c.Lookup(Remote{IP: "1.2.3.4"}); err != nil {
		t.Errorf("lookup once the lock is gone: %v", err)
	}
}

// TestDatabaseMode: the database is 0640 whatever the temporary file's
// mode was before, and whatever the umask lets through.
func TestDatabaseMode(t *testing.T) {
	dir := t.TempDir()
	db, tmp := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp")
	os.WriteFile(tmp, []byte("old"), 0o666)
	os.Chmod(tmp, 0o666)
	if err := Build(strings.NewReader(":allow\n"), db, tmp, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o640 {
		t.Errorf("database mode %04o, want 0640", m)
	}
}
