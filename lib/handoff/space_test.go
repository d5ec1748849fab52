package handoff

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSpaceNeeded(t *testing.T) {
	cases := []struct{ databytes, declared, want int64 }{
		{10 << 20, 0, 15 << 20},
		{10 << 20, 1 << 20, 15 << 20}, // databytes bounds any message
		{0, 1000, 1500},               // no limit: what the client declared
		{0, 0, 0},                     // nothing known: no check
	}
	for _, c := range cases {
		if got := SpaceNeeded(c.databytes, c.declared); got != c.want {
			t.Errorf("SpaceNeeded(%d, %d) = %d, want %d", c.databytes, c.declared, got, c.want)
		}
	}
}

func TestSpaceShort(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	sp := Space{Path: dir}
	if short, free, err := sp.Short(avail * 2); err != nil || !short || free <= 0 {
		t.Errorf("twice the free space: short %v, free %d, %v", short, free, err)
	}
	if short, _, err := sp.Short(avail / 4); err != nil || short {
		t.Errorf("a quarter of the free space: short %v, %v", short, err)
	}
	if short, _, err := (Space{}).Short(1 << 62); err != nil || short {
		t.Errorf("no path: short %v, %v", short, err)
	}
	if short, _, err := (Space{Path: filepath.Join(dir, "gone", "inject.sock")}).Short(1 << 62); err == nil || short {
		t.Errorf("a path that does not resolve: short %v, %v; want not short and the error", short, err)
	}
	env := map[string]string{"GW_QUEUE": "/q", "GW_QUEUED": "/q/lock/inject.sock"}
	if p := SpaceFor(func(k string) string { return env[k] }).Path; p != "/q/lock/inject.sock" {
		t.Errorf("SpaceFor with both: %q, want gw-queued's socket", p)
	}
	delete(env, "GW_QUEUED")
	if p := SpaceFor(func(k string) string { return env[k] }).Path; p != "/q" {
		t.Errorf("SpaceFor with GW_QUEUE: %q", p)
	}
}
