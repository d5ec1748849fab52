package queue

import (
	"os"
	"testing"
	"time"
)

// BenchmarkOutcome measures what the dot record adds to recording one
// delivery's outcome durably: the record and a write without flush,
// beside the outcome's record and the journal flush; "dot" is the dot
// record alone. GW_BENCH_DIR puts
// the queue on the filesystem to measure (default: the test's temporary
// directory).
func BenchmarkOutcome(b *testing.B) {
	for _, mode := range []string{"outcome", "dot+outcome", "dot"} {
		name, dot := mode, mode != "outcome"
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			if d := os.Getenv("GW_BENCH_DIR"); d != "" {
				var err error
				if dir, err = os.MkdirTemp(d, "bench"); err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
			}
			dir += "/queue"
			if err := Init(dir); err != nil {
				b.Fatal(err)
			}
			q, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			w, _ := q.NewMessage(0, 0)
			w.Write([]byte("Subject: x\n\n"))
			if err := w.Commit(env("a@example.net")); err != nil {
				b.Fatal(err)
			}
			r, err := q.OpenRunner()
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			id := r.Messages()[0].ID
			next := time.Now().Add(time.Hour)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if dot {
					r.DotSent(id, []int{0})
				}
				if mode == "dot" {
					continue // the dot record's own cost, no flush
				}
				r.Deferred(id, 0, next, TextOutcome("451 4.3.0 try later", Pending))
				if err := r.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
