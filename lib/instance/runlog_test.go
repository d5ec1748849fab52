package instance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/logtrace"
)

// The lines Run keeps for a daemon read back through logtrace, the reader
// of gw-qstat trace and show, with their times, in either flavour's stamp.
func TestServiceLogReadsBackAsTheLogReaderReadsIt(t *testing.T) {
	for _, flavour := range []string{"daemontools", "runit"} {
		t.Run(flavour, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log", "main")
			l, err := openServiceLog(dir, flavour)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 12, 2, 4, 2, 56, 123456789, time.UTC)
			if err := l.line(at, "info queued qid=6619eb7d11acb size=449"); err != nil {
				t.Fatal(err)
			}
			l.close()
			lines, err := logtrace.ReadDir(dir, "smtpd")
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != 1 || !lines[0].Time.Equal(at) || lines[0].Fields["qid"] != "6619eb7d11acb" {
				t.Fatalf("read back %+v, want one line at %v with qid=6619eb7d11acb", lines, at)
			}
		})
	}
}

// A full current is rotated to an @TAI64N.s file, as multilog does, and
// the oldest rotated files beyond the count kept are removed; every line
// kept reads back in order.
func TestServiceLogRotates(t *testing.T) {
	dir := t.TempDir()
	l, err := openServiceLog(dir, "daemontools")
	if err != nil {
		t.Fatal(err)
	}
	text := "info delivery qid=6619eb7d11acb " + strings.Repeat("x", 20000)
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	n := runLogMax/len(text)*(runLogFiles+3) + 5
	for i := 0; i < n; i++ {
		if err := l.line(at.Add(time.Duration(i)*time.Second), text); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	rotated, _ := filepath.Glob(filepath.Join(dir, "@*.s"))
	if len(rotated) != runLogFiles {
		t.Errorf("%d rotated files, want %d", len(rotated), runLogFiles)
	}
	if fi, err := os.Stat(filepath.Join(dir, "current")); err != nil || fi.Size() >= runLogMax {
		t.Errorf("current: %v, size %d: not rotated", err, fi.Size())
	}
	lines, err := logtrace.ReadDir(dir, "send")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(lines); i++ {
		if !lines[i].Time.After(lines[i-1].Time) {
			t.Fatalf("line %d (%v) not after line %d (%v)", i, lines[i].Time, i-1, lines[i-1].Time)
		}
	}
	if last := lines[len(lines)-1].Time; !last.Equal(at.Add(time.Duration(n-1) * time.Second)) {
		t.Errorf("last line at %v, want the last written", last)
	}
}
