package qstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gw/lib/envelope"
	"gw/lib/queue"
)

func TestSources(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"main", "bounce"} {
		if err := queue.Init(filepath.Join(root, name, "queue")); err != nil {
			t.Fatal(err)
		}
	}
	// Not instances: no queue/format.
	os.MkdirAll(filepath.Join(root, "half", "queue"), 0o755)
	os.WriteFile(filepath.Join(root, "README"), nil, 0o644)

	all := fmt.Sprintf("[{bounce %s/bounce/queue} {main %s/main/queue}]", root, root)
	tests := []struct {
		name string
		sel  Selection
		want string // sources, or "usage" for ErrUsage
	}{
		{"queue", Selection{Queue: "/q"}, "[{ /q}]"},
		{"queue beats env", Selection{Queue: "/q", EnvQueue: "/env"}, "[{ /q}]"},
		{"env when no flag", Selection{EnvQueue: "/env"}, "[{ /env}]"},
		{"root beats env", Selection{Root: root, EnvQueue: "/env"}, all},
		{"root alone is all", Selection{Root: root}, all},
		{"root and all", Selection{Root: root, All: true}, all},
		{"one instance", Selection{Root: root, Instance: "main"}, fmt.Sprintf("[{main %s/main/queue}]", root)},
		{"default root", Selection{Instance: "x"}, "[{x /var/gw/x/queue}]"},
		{"queue and root", Selection{Queue: "/q", Root: root}, "usage"},
		{"queue and instance", Selection{Queue: "/q", Instance: "main"}, "usage"},
		{"queue and all", Selection{Queue: "/q", All: true}, "usage"},
		{"instance and all", Selection{Root: root, Instance: "main", All: true}, "usage"},
		{"instance escaping the root", Selection{Root: root, Instance: "../etc"}, "usage"},
		{"instance dot-dot", Selection{Root: root, Instance: ".."}, "usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srcs, err := tc.sel.Sources()
			got := fmt.Sprint(srcs)
			if errors.Is(err, ErrUsage) {
				got = "usage"
			} else if err != nil {
				t.Fatalf("Sources(%+v): %v", tc.sel, err)
			}
			if got != tc.want {
				t.Errorf("Sources(%+v) = %s, want %s", tc.sel, got, tc.want)
			}
		})
	}
	if _, err := (Selection{Root: filepath.Join(root, "missing")}).Sources(); err == nil {
		t.Error("a missing root gave no error")
	}
}

// TestLoadRealQueue reads queues written by lib/queue's own writer and
// runner, so that the states gw-qstat names are the states the runner
// records, and one unreadable instance does not hide the others.
func TestLoadRealQueue(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "main", "queue")
	if err := queue.Init(dir); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	inject := func(rcpts ...string) queue.ID {
		w, err := q.NewMessage(1000, 1)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: x\n\nx\n"))
		if err := w.Commit(envelope.Envelope{Sender: "a@example.org", Recipients: rcpts}); err != nil {
			t.Fatal(err)
		}
		return w.ID()
	}
	deferred := inject("d1@example.net", "d2@example.net")
	held := inject("h@example.net")
	done := inject("x@example.net")
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	must(t, r.Delivered(deferred, 0))
	must(t, r.Deferred(deferred, 1, time.Now().Add(time.Hour), queue.Outcome{Source: queue.FromReply, Code: 421, Text: "later", Status: "4.0.0"}))
	must(t, r.Hold(held))
	must(t, r.Failed(done, 0, queue.Outcome{Source: queue.FromReply, Code: 550, Text: "no", Status: "5.0.0"}))
	must(t, r.Sync())
	incoming := inject("new@example.net")

	// A second "instance" whose queue is not a queue at all.
	os.MkdirAll(filepath.Join(root, "broken", "queue"), 0o755)
	os.WriteFile(filepath.Join(root, "broken", "queue", "format"), []byte("something else\n"), 0o644)

	srcs, err := Selection{Root: root}.Sources()
	if err != nil {
		t.Fatal(err)
	}
	reps := Load(srcs)
	if len(reps) != 2 || reps[0].Instance != "broken" || reps[0].Err == nil || reps[1].Err != nil {
		t.Fatalf("Load: %+v; want broken with an error, then main", reps)
	}
	got := map[queue.ID]MsgState{}
	for _, m := range reps[1].Messages {
		got[m.ID] = StateOf(m)
	}
	want := map[queue.ID]MsgState{deferred: Deferred, held: Hold, done: Done, incoming: Incoming}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", got, want)
	}
	must(t, r.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
