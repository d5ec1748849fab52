package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQstatFleet: the admin's loop collects each host's gw-qstat --json
// into host.json; gw-qstat fleet sums them and shapes them, and a file
// that is not gw-qstat's JSON is left out by name with exit 111.
func TestQstatFleet(t *testing.T) {
	dir := workDir(t)
	hosts := map[string][]string{"mx1": {"a@example.com", "b@example.net"}, "mx2": {"c@example.com"}}
	var files []string
	for host, rcpts := range hosts {
		q := filepath.Join(dir, host, "queue")
		if out, err := exec.Command(bin("gw-queue"), "--init", q).CombinedOutput(); err != nil {
			t.Fatalf("gw-queue --init: %v\n%s", err, out)
		}
		for _, r := range rcpts {
			if _, err := qstatInject(q, "s@sender.example", r, "Subject: x\n\nhi\n"); err != nil {
				t.Fatal(err)
			}
		}
		// What "ssh host gw-qstat --json > host.json" leaves.
		js, _ := qstatRun(t, nil, 0, "--queue", q, "--json")
		f := filepath.Join(dir, host+".json")
		os.WriteFile(f, []byte(js), 0o644)
		files = append(files, f)
	}
	out, _ := qstatRun(t, nil, 0, append([]string{"fleet"}, files...)...)
	for label, want := range map[string]int{"messages in queue": 3, "mx1: messages in queue": 2, "mx2: recipients pending": 1} {
		if got := qstatCount(t, out, label); got != want {
			t.Errorf("%s: %d, want %d\n%s", label, got, want, out)
		}
	}
	shape, _ := qstatRun(t, nil, 0, append([]string{"fleet", "--shape"}, files...)...)
	if !strings.Contains(shape, "fleet: 2 hosts") || !strings.Contains(shape, "instance: mx2") {
		t.Errorf("shape has no fleet or host table:\n%s", shape)
	}
	for _, l := range strings.Split(shape, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "example.com" {
			if f[1] != "2" {
				t.Errorf("example.com across the fleet: %q, want 2", l)
			}
			break
		}
	}
	bad := filepath.Join(dir, "mx3.json")
	os.WriteFile(bad, []byte(`{"queue_id":"nothex","queue_name":"active"}`+"\n"), 0o644)
	out, errOut := qstatRun(t, nil, 111, append([]string{"fleet"}, append(files, bad)...)...)
	// No fleet totals without mx3 (they would read as the fleet's); the
	// hosts that were read are shown.
	if _, ok := qstatNumber(out, "messages in queue"); ok || qstatCount(t, out, "mx1: messages in queue") != 2 ||
		!strings.Contains(errOut, "host left out: mx3: line 1") {
		t.Errorf("with a bad file: %s\n%s", out, errOut)
	}
}
