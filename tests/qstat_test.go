package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gw/lib/queue"
)

// qstatMessages and qstatInjectors are the proof the foundation issue
// asks for: this many messages from this many concurrent gw-queue
// processes, every one of them counted and listed by gw-qstat.
const (
	qstatMessages  = 1000
	qstatInjectors = 32
)

// qstatQueued is what gw-queue said it queued: the id from its log line,
// and the one recipient the test gave that message.
type qstatQueued struct {
	id, rcpt string
}

var qstatQid = regexp.MustCompile(`\bqid=([0-9a-f]{13})\b`)

// qstatInject runs gw-queue once, as a listener would: the message on
// fd 0, the envelope on fd 1.
func qstatInject(qdir, sender, rcpt, body string) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	// The envelope fits in the pipe buffer: write it all before gw-queue runs.
	fmt.Fprintf(w, "F%s\x00T%s\x00\x00", sender, rcpt)
	w.Close()
	cmd := exec.Command(bin("gw-queue"))
	cmd.Env = append(os.Environ(), "GW_QUEUE="+qdir)
	cmd.Stdin = strings.NewReader(body)
	cmd.Stdout = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gw-queue: %v: %s", err, stderr.String())
	}
	m := qstatQid.FindStringSubmatch(stderr.String())
	if m == nil {
		return "", fmt.Errorf("gw-queue logged no qid: %q", stderr.String())
	}
	return m[1], nil
}

// qstatExec runs gw-qstat and returns its output and exit code.
func qstatExec(env []string, args ...string) (stdout, stderr string, code int, err error) {
	cmd := exec.Command(bin("gw-qstat"), args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode(), nil
	}
	return o.String(), e.String(), 0, err
}

// qstatRun runs gw-qstat and fails the test unless it exits with code.
func qstatRun(t *testing.T, env []string, code int, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, got, err := qstatExec(env, args...)
	if err != nil {
		t.Fatalf("gw-qstat %v: %v", args, err)
	}
	if got != code {
		t.Fatalf("gw-qstat %v: exit %d, want %d\nstderr: %s", args, got, code, stderr)
	}
	return stdout, stderr
}

// TestQstatCountsConcurrentInjections injects 1,000 messages from 32
// concurrent gw-queue processes while gw-qstat reads the queue over and
// over, then checks that every format counts and lists exactly what was
// queued.
func TestQstatCountsConcurrentInjections(t *testing.T) {
	root := workDir(t)
	qdir := filepath.Join(root, "main", "queue")
	if out, err := exec.Command(bin("gw-queue"), "--init", qdir).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v: %s", err, out)
	}

	// Readers alongside the injectors: each pass must succeed, warn of
	// nothing, and never count fewer messages than the pass before.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var passes atomic.Int64
	readers.Add(1)
	go func() {
		defer readers.Done()
		last := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, errs, code, err := qstatExec(nil, "--queue", qdir)
			n, ok := qstatNumber(out, "messages in queue")
			if err != nil || code != 0 || !ok || n < last || n > qstatMessages || errs != "" {
				t.Errorf("pass during injection: exit %d (%v), %d messages after %d; stderr %q", code, err, n, last, errs)
				return
			}
			last = n
			passes.Add(1)
		}
	}()

	start := time.Now()
	queued := make([]qstatQueued, qstatMessages)
	var injectors sync.WaitGroup
	for w := 0; w < qstatInjectors; w++ {
		injectors.Add(1)
		go func(w int) {
			defer injectors.Done()
			for i := w; i < qstatMessages; i += qstatInjectors {
				rcpt := fmt.Sprintf("user%04d@d%d.example.net", i, i%7)
				body := fmt.Sprintf("Subject: qstat test %d\n\nmessage %d\n", i, i)
				id, err := qstatInject(qdir, "sender@example.org", rcpt, body)
				if err != nil {
					t.Errorf("message %d: %v", i, err)
					return
				}
				queued[i] = qstatQueued{id, rcpt}
			}
		}(w)
	}
	injectors.Wait()
	close(stop)
	readers.Wait()
	t.Logf("%d messages from %d gw-queue processes in %v; %d gw-qstat passes meanwhile",
		qstatMessages, qstatInjectors, time.Since(start).Round(time.Millisecond), passes.Load())
	if t.Failed() {
		return
	}
	want := map[string]string{} // id → recipient
	for _, q := range queued {
		want[q.id] = q.rcpt
	}
	if len(want) != qstatMessages {
		t.Fatalf("gw-queue handed out %d distinct ids for %d messages", len(want), qstatMessages)
	}
	// What the queue holds, read by the library rather than by gw-qstat.
	snap := snapshot(t, qdir)
	var held []string
	for _, m := range snap.Messages {
		held = append(held, m.ID.String())
	}

	t0 := time.Now()
	out, _ := qstatRun(t, nil, 0, "--queue", qdir)
	t.Logf("gw-qstat summary over %d messages: %v", qstatMessages, time.Since(t0).Round(time.Millisecond))
	lines := strings.SplitN(out, "\n", 3)
	if lines[0] != "messages in queue: 1000" || lines[1] != "messages in queue but not yet preprocessed: 1000" {
		t.Errorf("summary starts %q, %q", lines[0], lines[1])
	}
	if n := qstatCount(t, out, "recipients pending"); n != qstatMessages {
		t.Errorf("summary: %d recipients pending, want %d", n, qstatMessages)
	}

	// The listing: every id once, each with the one recipient it was given.
	out, _ = qstatRun(t, nil, 0, "list", "--queue", qdir)
	listed := qstatParseList(t, out)
	if len(listed) != qstatMessages {
		t.Errorf("list: %d messages, want %d", len(listed), qstatMessages)
	}
	for id, rcpts := range listed {
		if len(rcpts) != 1 || rcpts[0] != want[id] {
			t.Errorf("list: #%s has recipients %q, want [%s]", id, rcpts, want[id])
		}
	}

	// JSON, with the queue from $GW_QUEUE as gw-queue takes it.
	out, _ = qstatRun(t, []string{"GW_QUEUE=" + qdir}, 0, "--json")
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m struct {
			QueueName  string `json:"queue_name"`
			QueueID    string `json:"queue_id"`
			Size       int64  `json:"message_size"`
			Recipients []struct {
				Address string `json:"address"`
				State   string `json:"state"`
			} `json:"recipients"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if m.QueueName != "incoming" || len(m.Recipients) != 1 || m.Recipients[0].Address != want[m.QueueID] ||
			m.Recipients[0].State != "pending" || m.Size <= 0 {
			t.Errorf("--json: %s", sc.Text())
		}
		ids = append(ids, m.QueueID)
	}
	if !slices.Equal(ids, held) {
		t.Errorf("--json lists %d ids, the queue holds %d; they differ", len(ids), len(held))
	}

	// Every instance under the root, in every format that counts.
	out, _ = qstatRun(t, nil, 0, "metrics", "--root", root)
	metrics := qstatParseMetrics(t, out)
	for series, want := range map[string]float64{
		`gw_queue_messages{gw_instance="main",state="incoming"}`:    qstatMessages,
		`gw_queue_messages{gw_instance="main",state="active"}`:      0,
		`gw_queue_recipients{gw_instance="main",state="pending"}`:   qstatMessages,
		`gw_queue_problems{gw_instance="main"}`:                     0,
		`gw_queue_injections_in_progress{gw_instance="main"}`:       0,
		`gw_queue_recipients{gw_instance="main",state="delivered"}`: 0,
	} {
		if got, ok := metrics[series]; !ok || got != want {
			t.Errorf("metrics: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	out, _ = qstatRun(t, nil, 0, "shape", "--root", root, "--instance", "main")
	if !regexp.MustCompile(`(?m)^ *TOTAL +1000 +1000 `).MatchString(out) {
		t.Errorf("shape: no TOTAL row of 1000 new recipients:\n%s", out)
	}

	qstatTornAndForeign(t, qdir, snap)
	qstatWhileRunnerRemoves(t, qdir, want)
}

// qstatTornAndForeign plants a torn copy of a segment under a valid id and
// a file whose name is no id: gw-qstat warns of both and still counts the
// 1,000 messages.
func qstatTornAndForeign(t *testing.T, qdir string, snap *queue.Snapshot) {
	last := snap.Messages[len(snap.Messages)-1]
	b, err := os.ReadFile(filepath.Join(qdir, "seg", last.Segment))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("Subject: qstat test"))
	if i < 0 {
		t.Fatalf("segment %s: no body found", last.Segment)
	}
	b[i] = 's' // the record's checksum no longer matches
	b = append(b, "garbage appended by the test\n"...)
	torn := (last.ID + 1000).String()
	if err := os.WriteFile(filepath.Join(qdir, "seg", torn), b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(qdir, "seg", "not-a-segment"), []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, errs := qstatRun(t, nil, 0, "--queue", qdir)
	if n := qstatCount(t, out, "messages in queue"); n != qstatMessages {
		t.Errorf("with a torn and a foreign file: %d messages, want %d", n, qstatMessages)
	}
	if n := qstatCount(t, out, "problem files"); n != 2 {
		t.Errorf("with a torn and a foreign file: %d problem files, want 2", n)
	}
	for _, name := range []string{torn, "not-a-segment"} {
		if !regexp.MustCompile(`(?m)^gw-qstat: warning: .*seg/` + name + `: `).MatchString(errs) {
			t.Errorf("no warning about seg/%s; stderr:\n%s", name, errs)
		}
	}
	out, _ = qstatRun(t, nil, 0, "metrics", "--queue", qdir)
	if got := qstatParseMetrics(t, out)[`gw_queue_problems{gw_instance="main"}`]; got != 2 {
		t.Errorf("metrics: gw_queue_problems %v, want 2", got)
	}
	os.Remove(filepath.Join(qdir, "seg", torn))
	os.Remove(filepath.Join(qdir, "seg", "not-a-segment"))
}

// qstatWhileRunnerRemoves lets a runner deliver and remove every message,
// collecting segments as it goes, while gw-qstat reads: files vanish under
// it, and every pass must still succeed and list only queued messages.
func qstatWhileRunnerRemoves(t *testing.T, qdir string, want map[string]string) {
	q, err := queue.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	r, err := q.OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		for i, m := range r.Messages() {
			if err := r.Delivered(m.ID, 0); err != nil {
				done <- err
				return
			}
			if err := r.Remove(m.ID); err != nil {
				done <- err
				return
			}
			// Paced so that gw-qstat passes overlap many removals.
			time.Sleep(time.Millisecond)
			if i%50 == 49 {
				if _, err := r.Collect(); err != nil {
					done <- err
					return
				}
			}
		}
		_, err := r.Collect()
		done <- err
	}()
	passes := 0
	for finished := false; !finished; passes++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("runner: %v", err)
			}
			finished = true
		default:
		}
		out, errs := qstatRun(t, nil, 0, "list", "--queue", qdir)
		if errs != "" {
			t.Errorf("pass %d while the runner removes: stderr %q", passes, errs)
		}
		for id, rcpts := range qstatParseList(t, out) {
			if _, ok := want[id]; !ok || len(rcpts) != 1 {
				t.Errorf("pass %d while the runner removes: unknown #%s %q", passes, id, rcpts)
			}
		}
	}
	out, _ := qstatRun(t, nil, 0, "--queue", qdir)
	if n := qstatCount(t, out, "messages in queue"); n != 0 {
		t.Errorf("after the runner removed everything: %d messages", n)
	}
	t.Logf("%d gw-qstat passes while the runner removed %d messages", passes, len(want))
}

// qstatNumber returns the number on the summary line "label: N".
func qstatNumber(summary, label string) (int, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `: (\d+)$`).FindStringSubmatch(summary)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// qstatCount is qstatNumber for a line that must be there.
func qstatCount(t *testing.T, summary, label string) int {
	t.Helper()
	n, ok := qstatNumber(summary, label)
	if !ok {
		t.Fatalf("summary has no %q line:\n%s", label, summary)
	}
	return n
}

var qstatStats = regexp.MustCompile(`^\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT  #([0-9a-f]{13})  \d+  <[^>]*> `)

// qstatParseList reads the qmail-qread style listing into id → addresses.
func qstatParseList(t *testing.T, out string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	var id string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		if m := qstatStats.FindStringSubmatch(line); m != nil {
			id = m[1]
			if _, dup := got[id]; dup {
				t.Errorf("list: #%s twice", id)
			}
			got[id] = nil
			continue
		}
		f := strings.Split(line, "\t")
		if id == "" || len(f) < 3 || f[1] != "remote" {
			t.Fatalf("list: unexpected line %q", line)
		}
		got[id] = append(got[id], f[2])
	}
	return got
}

var qstatSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (\S+)$`)

// qstatParseMetrics checks the text exposition format (0.0.4) and returns
// each series with its value: every sample belongs to a family announced
// by HELP and TYPE lines, and no family appears twice.
func qstatParseMetrics(t *testing.T, out string) map[string]float64 {
	t.Helper()
	series := map[string]float64{}
	typed := map[string]bool{}
	family := ""
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && (f[1] == "HELP" || f[1] == "TYPE") {
			if f[1] == "TYPE" {
				if typed[f[2]] || f[3] != "gauge" {
					t.Errorf("metrics: %q", line)
				}
				typed[f[2]] = true
			}
			family = f[2]
			continue
		}
		m := qstatSample.FindStringSubmatch(line)
		if m == nil || m[1] != family || !typed[family] {
			t.Fatalf("metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", line, err)
		}
		series[m[1]+m[2]] = v
	}
	return series
}

// TestQstatExitCodes: 100 for bad usage, 111 when a queue cannot be read
// at all — after showing the instances that could be.
func TestQstatExitCodes(t *testing.T) {
	root := workDir(t)
	for _, name := range []string{"good", "broken"} {
		if out, err := exec.Command(bin("gw-queue"), "--init", filepath.Join(root, name, "queue")).CombinedOutput(); err != nil {
			t.Fatalf("gw-queue --init: %v: %s", err, out)
		}
	}
	if _, err := qstatInject(filepath.Join(root, "good", "queue"), "", "postmaster@example.net", "Subject: x\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	// Unreadable for any user, root included: not a queue of a known format.
	if err := os.WriteFile(filepath.Join(root, "broken", "queue", "format"), []byte("gw-queue 99\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // a line the output must hold
		stderr string // a pattern stderr must match
		nozero bool   // no total may be printed: it would read as an empty queue
	}{
		{"unknown argument", []string{"--queue", root, "frobnicate"}, 100, "", `^gw-qstat: fatal: usage: `, false},
		{"queue and instance", []string{"--queue", root, "--instance", "good"}, 100, "", `fatal: usage: `, false},
		{"json with metrics", []string{"--root", root, "--json", "metrics"}, 100, "", `fatal: usage: `, false},
		{"not a queue", []string{"--queue", root}, 111, "", `fatal: .*not a gw queue`, true},
		{"a queue of an unknown format", []string{"--queue", filepath.Join(root, "broken", "queue")}, 111, "", `fatal: unable to read queue`, true},
		{"missing root", []string{"--root", filepath.Join(root, "nowhere")}, 111, "", `fatal: unable to list instances`, false},
		{"one good instance", []string{"--root", root, "--instance", "good"}, 0, "messages in queue: 1", `^$`, false},
		{"a broken instance among others", []string{"--root", root}, 111, "good: messages in queue: 1", `fatal: unable to read queue: .*broken`, true},
		{"empty root", []string{"--root", filepath.Join(root, "good", "queue", "journal")}, 0, "messages in queue: 0", `warning: no instances under`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs := qstatRun(t, nil, tc.code, tc.args...)
			if tc.stdout != "" && !slices.Contains(strings.Split(out, "\n"), tc.stdout) {
				t.Errorf("gw-qstat %v: no line %q in:\n%s", tc.args, tc.stdout, out)
			}
			if !regexp.MustCompile(tc.stderr).MatchString(errs) {
				t.Errorf("gw-qstat %v: stderr %q does not match %q", tc.args, errs, tc.stderr)
			}
			if tc.nozero && regexp.MustCompile(`(?m)^messages in queue: `).MatchString(out) {
				t.Errorf("gw-qstat %v: a total for a queue it could not read:\n%s", tc.args, out)
			}
		})
	}
}

// TestQstatRootWithAQueueItMayNotRead: a monitor run as a user who may
// not search an instance's queue, asking for every instance under the
// root (the default without --instance), is told so and exits 111; the
// instance is not left out as if there were none, which would print
// "messages in queue: 0" and exit 0.
func TestQstatRootWithAQueueItMayNotRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run gw-qstat as another user")
	}
	root := workDir(t)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	qdir := filepath.Join(root, "main", "queue")
	if out, err := exec.Command(bin("gw-queue"), "--init", qdir).CombinedOutput(); err != nil {
		t.Fatalf("gw-queue --init: %v: %s", err, out)
	}
	if err := os.Chmod(filepath.Join(root, "main"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(qdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--root", root}, {"--root", root, "metrics"}, {"--root", root, "--all", "list"}} {
		// $ su nobody -c 'gw-qstat --root R …'
		cmd := exec.Command(bin("gw-qstat"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 111 {
			t.Errorf("gw-qstat %v as nobody: %v, want exit 111\nstdout: %s\nstderr: %s", args, err, o.String(), e.String())
		}
		if want := "fatal: unable to read queue: " + qdir; !strings.Contains(e.String(), want) {
			t.Errorf("gw-qstat %v as nobody: stderr %q does not say %q", args, e.String(), want)
		}
		if strings.Contains(e.String(), "no instances under") || strings.Contains(o.String(), "messages in queue: 0") {
			t.Errorf("gw-qstat %v as nobody reads the unreadable queue as empty:\n%s%s", args, o.String(), e.String())
		}
	}
}
