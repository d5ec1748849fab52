package logline

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestFormat(t *testing.T) {
	cases := []struct {
		name string
		kv   []any
		want string
	}{
		{"plain", []any{"qid", "0669a1b2c3d4e", "size", 10240}, "info ev qid=0669a1b2c3d4e size=10240\n"},
		{"space", []any{"err", "no such file"}, "info ev err=\"no such file\"\n"},
		{"empty", []any{"from", ""}, "info ev from=\"\"\n"},
		{"control bytes", []any{"helo", "a\r\nb\x00"}, "info ev helo=\"a\\r\\nb\\x00\"\n"},
		{"equals", []any{"x", "a=b"}, "info ev x=\"a=b\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Format("info", "ev", c.kv...); got != c.want {
				t.Errorf("Format(%q) = %q, want %q", c.kv, got, c.want)
			}
		})
	}
}

// A session's fields, formatted once, come after the event name and
// before the line's own, quoted as any value is.
func TestLogWith(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	var tapped []string
	l.Tap(func(severity, event string, kv []any) { tapped = append(tapped, Format(severity, event, kv...)) })
	sid := With("sid", "abc", "peer", "a b")
	l.LogWith(sid, "info", "mail", "from", "x@example.org", "size", 10, "err", fmt.Errorf("no=way"))
	l.LogWith(sid, "warning", "end")
	l.Log("info", "plain", "n", uint32(7), "ok", true)
	want := "info mail sid=abc peer=\"a b\" from=x@example.org size=10 err=\"no=way\"\n" +
		"warning end sid=abc peer=\"a b\"\n" +
		"info plain n=7 ok=true\n"
	if b.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", b.String(), want)
	}
	if strings.Join(tapped, "") != want {
		t.Errorf("the tap saw\n%s\nwant what was logged\n%s", strings.Join(tapped, ""), want)
	}
}

// The kinds toString formats itself read as fmt would print them.
func TestToStringAsFmt(t *testing.T) {
	for _, v := range []any{true, false, 0, -7, int64(-1 << 40), uint64(1 << 63), uint32(4e9), uint16(25), 3.5, nil, []string{"a"}} {
		if got, want := toString(v), fmt.Sprint(v); got != want {
			t.Errorf("toString(%#v) = %q, want %q", v, got, want)
		}
	}
}

// lineWriter records the writes it is given.
type lineWriter struct {
	mu     sync.Mutex
	writes int
	out    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.out = append(w.out, p...)
	return len(p), nil
}

// Lines logged at once by many goroutines are each written whole, once,
// and each is written by the time its Log returns.
func TestLogConcurrent(t *testing.T) {
	w := &lineWriter{}
	l := New(w)
	const n, each = 8, 500
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.Info("ev", "g", g, "i", i)
				w.mu.Lock()
				written := bytes.Contains(w.out, []byte(fmt.Sprintf("info ev g=%d i=%d\n", g, i)))
				w.mu.Unlock()
				if !written {
					t.Errorf("line g=%d i=%d not written when Log returned", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(string(w.out), "\n"), "\n")
	if len(lines) != n*each {
		t.Fatalf("%d lines, want %d", len(lines), n*each)
	}
	next := make([]int, n) // each goroutine's lines in its order
	for _, line := range lines {
		var g, i int
		if _, err := fmt.Sscanf(line, "info ev g=%d i=%d", &g, &i); err != nil || i != next[g] {
			t.Fatalf("line %q out of order or torn (want i=%d)", line, next[g])
		}
		next[g]++
	}
	t.Logf("%d lines in %d writes", n*each, w.writes)
}

// writes records each write it is given, as one string.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, string(p))
	return len(p), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

// A session's held lines reach the writer only at Flush, all in one
// write and in the order logged; the tap hears each as it is logged.
func TestHeld(t *testing.T) {
	var w writes
	l := New(&w)
	var tapped []string
	l.Tap(func(severity, event string, kv []any) { tapped = append(tapped, Format(severity, event, kv...)) })
	h := l.Hold(With("sid", "s1"))
	h.Log("info", "mail", "from", "a@example.org")
	h.Log("info", "rcpt", "to", "b c@example.net")
	if got := w.all(); len(got) != 0 {
		t.Fatalf("written before Flush: %q", got)
	}
	if len(tapped) != 2 {
		t.Errorf("the tap heard %d events before Flush, want 2", len(tapped))
	}
	h.Flush()
	want := "info mail sid=s1 from=a@example.org\ninfo rcpt sid=s1 to=\"b c@example.net\"\n"
	if got := w.all(); len(got) != 1 || got[0] != want {
		t.Fatalf("writes %q, want one: %q", got, want)
	}
	if strings.Join(tapped, "") != want {
		t.Errorf("the tap heard %q, want %q", strings.Join(tapped, ""), want)
	}
	h.Flush() // nothing held: no write
	h.Log("info", "end")
	h.Flush()
	if got := w.all(); len(got) != 2 || got[1] != "info end sid=s1\n" {
		t.Errorf("writes %q, want the end line alone in a second", got)
	}
	h.Log("info", "connect", "ip", "192.0.2.1")
	h.Release() // writes what is held, then gives the buffer back
	h.Log("info", "reused")
	h.Release()
	if got := w.all(); len(got) != 4 || got[2] != "info connect sid=s1 ip=192.0.2.1\n" || got[3] != "info reused sid=s1\n" {
		t.Errorf("writes %q, want the lines held at each Release", got)
	}
	var none *Held
	none.Flush()
	none.Release()
}
