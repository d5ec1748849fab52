package greylist

import (
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPeek: Peek answers as Check would at each step of a triplet's life,
// says why, and leaves the file byte for byte as it was (or absent).
func TestPeek(t *testing.T) {
	l, now := newList(t, false)
	const ip, from, rcpt = "192.0.2.1", "a@x.example", "u@example.com"
	pass, why, err := l.Peek(ip, from, rcpt)
	if err != nil || pass || !strings.Contains(why, "new") {
		t.Fatalf("Peek before any check = %v, %q, %v; want deferred as new", pass, why, err)
	}
	if _, err := os.Stat(l.Path); !os.IsNotExist(err) {
		t.Fatalf("Peek created the file: %v", err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		check   bool // record the triplet with Check after peeking
		pass    bool
		why     string
	}{
		{"recorded, too early", 0, false, false, "first seen 0s ago, delay 5m0s: deferred"},
		{"still too early", time.Minute, false, false, "first seen 1m0s ago"},
		{"past the delay", 5 * time.Minute, true, true, "past the delay"},
		{"network whitelisted", time.Minute, false, true, "192.0.2.0/24 is whitelisted"},
	}
	if _, err := l.Check(ip, from, rcpt); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		*now = now.Add(s.advance)
		before, err := os.ReadFile(l.Path)
		if err != nil {
			t.Fatal(err)
		}
		pass, why, err := l.Peek(ip, from, rcpt)
		if err != nil || pass != s.pass || !strings.Contains(why, s.why) {
			t.Errorf("%s: Peek = %v, %q, %v; want %v, %q", s.name, pass, why, err, s.pass, s.why)
		}
		if after, _ := os.ReadFile(l.Path); string(after) != string(before) {
			t.Errorf("%s: Peek changed the file", s.name)
		}
		if s.check {
			if got, err := l.Check(ip, from, rcpt); err != nil || got != s.pass {
				t.Errorf("%s: Check = %v, %v after Peek said %v", s.name, got, err, s.pass)
			}
		}
	}
}

// TestPeekLocked: a listener that keeps the file open holds it locked;
// Peek fails after its wait and says why, and the caller fails open.
func TestPeekLocked(t *testing.T) {
	l, _ := newList(t, false)
	db, err := bolt.Open(l.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, _, err := l.Peek("192.0.2.1", "a@x", "u@example.com"); err == nil || !strings.Contains(err.Error(), "running listener") {
		t.Errorf("Peek on a locked file: %v", err)
	}
}
