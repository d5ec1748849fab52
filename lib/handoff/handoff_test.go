package handoff

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/dsn"
	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qq"
)

var testEnv = envelope.Envelope{Sender: "s@sender.example", Recipients: []string{"u@example.com"}}

// fakeQueued speaks gw-queued's socket protocol: frames of a 4-byte
// length and data, a zero length, the envelope up to its final NUL, then
// one byte of exit code. It records the messages it "queued"; closeFirst
// connections are closed after their first frame header, unread, as by a
// gw-queued that is going away.
type fakeQueued struct {
	path       string
	code       byte
	closeFirst int
	old        bool // speaks protocol version 1: refuses the hello as gw-queued did
	seq        int  // queue ids handed out

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	msgs  []string
	envs  []string
}

func startQueued(t *testing.T) *fakeQueued {
	f := &fakeQueued{path: filepath.Join(t.TempDir(), "inject.sock")}
	f.listen(t)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeQueued) listen(t *testing.T) {
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			drop := f.closeFirst > 0
			if drop {
				f.closeFirst--
			}
			f.mu.Unlock()
			go f.serve(c, drop)
		}
	}()
}

// stop closes the listener and every connection: gw-queued stopped.
func (f *fakeQueued) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ln.Close()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	os.Remove(f.path)
}

func (f *fakeQueued) serve(c net.Conn, drop bool) {
	defer c.Close()
	if drop { // read one frame header, leave the rest unread: a reset
		var hdr [4]byte
		io.ReadFull(c, hdr[:])
		if binary.BigEndian.Uint32(hdr[:])>>8 == 0xFFFFFF { // after the hello
			c.Write(hdr[3:])
			io.ReadFull(c, hdr[:])
		}
		return
	}
	br := bufio.NewReader(c)
	version := 1
	for {
		var msg bytes.Buffer
		for first := true; ; first = false {
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if first && n>>8 == 0xFFFFFF {
				f.mu.Lock()
				old := f.old
				f.mu.Unlock()
				if old { // an oversized chunk to gw-queued of version 1
					c.Write([]byte{qq.ReadError})
					return
				}
				version = int(n & 0xFF)
				c.Write([]byte{byte(version)})
				first = true
				continue
			}
			if n == 0 {
				break
			}
			if n > 1<<20 { // gw-queued's limit on a chunk
				return
			}
			if _, err := io.CopyN(&msg, br, int64(n)); err != nil {
				return
			}
		}
		var env bytes.Buffer
		for {
			item, err := br.ReadBytes(0)
			if err != nil {
				return
			}
			env.Write(item)
			if len(item) == 1 {
				break
			}
		}
		f.mu.Lock()
		if f.code == 0 {
			f.msgs = append(f.msgs, msg.String())
			f.envs = append(f.envs, env.String())
		}
		code := f.code
		f.seq++
		qid := fmt.Sprintf("%013x", f.seq)
		f.mu.Unlock()
		reply := []byte{code}
		if version >= 2 && code == 0 {
			reply = append(append(reply, byte(len(qid))), qid...)
		}
		c.Write(reply)
	}
}

func (f *fakeQueued) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeQueued) envelopes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.envs...)
}

func (f *fakeQueued) queued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

func send(t *testing.T, inj Injector, body string) (int, error) {
	t.Helper()
	tx, err := inj.Begin(testEnv)
	if err != nil {
		return -1, err
	}
	io.WriteString(tx, body)
	return tx.Commit()
}

func TestPoolMessages(t *testing.T) {
	cases := []struct {
		name string
		body string
		code byte
	}{
		{"small", "Subject: x\n\nhi\n", 0},
		{"empty", "", 0},
		{"at the replay limit", strings.Repeat("x", replayLimit), 0},
		{"streamed", strings.Repeat("0123456789abcde\n", 3*replayLimit/16+7), 0},
		{"one write of several chunks", strings.Repeat("x", 4*inject.MaxChunk+3), 0},
		{"NULs and CRs", "a\x00b\rc\n", 0},
		{"refused", "x\n", 31},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := startQueued(t)
			f.set(func() { f.code = c.code })
			p := &Pool{sock: f.path}
			code, err := send(t, p, c.body)
			if int(c.code) != code || (c.code == 0) != (err == nil) {
				t.Fatalf("Commit = %d, %v; want %d", code, err, c.code)
			}
			if c.code == 0 {
				if q := f.queued(); len(q) != 1 || q[0] != c.body {
					t.Errorf("queued %d messages (%d bytes), want the %d bytes sent", len(q), len(strings.Join(q, "")), len(c.body))
				}
				if f.envelopes()[0] != string(testEnv.Wire()) {
					t.Errorf("envelope %q, want %q", f.envelopes()[0], testEnv.Wire())
				}
			}
		})
	}
}

// TestPoolAfterRestart: gw-queued restarts while connections sit in the
// pool; the next messages must all be accepted, none answered 451.
func TestPoolAfterRestart(t *testing.T) {
	f := startQueued(t)
	p := &Pool{sock: f.path}
	var txs []Tx
	for i := 0; i < 4; i++ { // four connections in the pool
		tx, err := p.Begin(testEnv)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		io.WriteString(tx, "x\n")
		if code, err := tx.Commit(); code != 0 {
			t.Fatalf("before the restart: %d %v", code, err)
		}
	}
	f.stop()
	f.listen(t)
	for i := 0; i < 6; i++ {
		if code, err := send(t, p, "after\n"); code != 0 {
			t.Errorf("message %d after the restart: %d %v", i, code, err)
		}
	}
	if n := len(f.queued()); n != 10 {
		t.Errorf("%d messages queued, want 10", n)
	}
}

// TestPoolWaitsForRestart: a message that arrives while gw-queued is down
// for a moment (a supervised restart) waits for it instead of failing.
func TestPoolWaitsForRestart(t *testing.T) {
	f := startQueued(t)
	f.stop()
	p := &Pool{sock: f.path}
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := send(t, p, "during the restart\n") // never fails t
		done <- result{code, err}
	}()
	time.Sleep(300 * time.Millisecond)
	f.listen(t)
	if r := <-done; r.code != 0 {
		t.Fatalf("message during the restart: %d %v", r.code, r.err)
	}
	if q := f.queued(); len(q) != 1 {
		t.Errorf("%d messages queued, want 1", len(q))
	}
}

// TestPoolRetriesDeadConnection: the connection dies as the message is
// sent (after Stale said it was alive): a held message goes once more on
// a fresh connection; twice dead is a temporary failure, never a
// duplicate.
func TestPoolRetriesDeadConnection(t *testing.T) {
	for _, c := range []struct {
		name   string
		closes int
		want   int
		queued int
	}{{"once", 1, qq.OK, 1}, {"twice", 2, qq.ReadError, 0}} {
		t.Run(c.name, func(t *testing.T) {
			f := startQueued(t)
			f.set(func() { f.closeFirst = c.closes })
			p := &Pool{sock: f.path}
			code, err := send(t, p, strings.Repeat("y", 1000))
			if code != c.want {
				t.Errorf("Commit = %d (%v), want %d", code, err, c.want)
			}
			if n := len(f.queued()); n != c.queued {
				t.Errorf("%d queued, want %d", n, c.queued)
			}
		})
	}
}

func TestPoolAbort(t *testing.T) {
	for _, size := range []int{10, 3 * replayLimit} {
		f := startQueued(t)
		p := &Pool{sock: f.path}
		tx, err := p.Begin(testEnv)
		if err != nil {
			t.Fatal(err)
		}
		tx.Write(bytes.Repeat([]byte("z"), size))
		tx.Abort()
		if code, err := send(t, p, "next\n"); code != 0 {
			t.Errorf("size %d: the message after an abort: %d %v", size, code, err)
		}
		if q := f.queued(); len(q) != 1 || q[0] != "next\n" {
			t.Errorf("size %d: aborted message queued: %d messages", size, len(q))
		}
	}
}

func TestPoolLateEnvelope(t *testing.T) {
	f := startQueued(t)
	p := &Pool{sock: f.path}
	tx, err := p.Begin(envelope.Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, "late\n")
	tx.(Late).SetEnvelope(testEnv)
	if code, err := tx.Commit(); code != 0 {
		t.Fatalf("Commit %d %v", code, err)
	}
	if f.envelopes()[0] != string(testEnv.Wire()) {
		t.Errorf("envelope %q", f.envelopes()[0])
	}
}

func TestPoolDown(t *testing.T) {
	p := &Pool{sock: filepath.Join(t.TempDir(), "nobody.sock"), waitUp: time.Millisecond}
	if _, err := p.Begin(testEnv); err == nil {
		t.Errorf("Begin with no gw-queued succeeded")
	}
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "qq")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExec runs qmail-queue stand-ins: each answers with its exit code;
// one killed by a signal, or one that exits 0 without reading the
// message, is a temporary failure, never a success.
func TestExec(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cases := []struct {
		name, script string
		body         string
		want         int
	}{
		{"queues", "cat > " + out + " && cat <&1 > " + out + ".env\n", "hi\n", 0},
		{"refuses", "cat >/dev/null\nexit 31\n", "hi\n", 31},
		{"temporary", "cat >/dev/null\nexit 53\n", "hi\n", 53},
		{"killed", "kill -9 $$\n", "hi\n", codeCrashed},
		{"exits 0 unread", "exit 0\n", strings.Repeat("x", 1<<20), qq.ReadError},
		{"unknown code", "cat >/dev/null\nexit 200\n", "hi\n", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &Exec{Path: script(t, c.script)}
			code, err := send(t, e, c.body)
			if code != c.want {
				t.Errorf("Commit = %d (%v), want %d", code, err, c.want)
			}
			if c.want != 0 && err == nil {
				t.Errorf("no error with code %d", code)
			}
		})
	}
	if b, _ := os.ReadFile(out); string(b) != "hi\n" {
		t.Errorf("injector read %q", b)
	}
	if b, _ := os.ReadFile(out + ".env"); string(b) != string(testEnv.Wire()) {
		t.Errorf("injector's envelope %q", b)
	}
}

// TestExecAbort: an aborted message never gets the envelope's final NUL.
func TestExecAbort(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	e := &Exec{Path: script(t, "cat >/dev/null\ncat <&1 > "+out+"\n")}
	tx, err := e.Begin(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, "x\n")
	tx.Abort()
	if b, _ := os.ReadFile(out); len(b) != 0 {
		t.Errorf("aborted injector read envelope %q", b)
	}
	if _, err := (&Exec{Path: "/nonexistent/gw-queue"}).Begin(testEnv); err == nil {
		t.Errorf("a missing injector started")
	}
}

func TestSelect(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"QMAILQUEUE wins", map[string]string{"QMAILQUEUE": "/bin/scan", "GW_QUEUED": "/s"}, "exec:/bin/scan"},
		{"gw-queued socket", map[string]string{"GW_QUEUED": "/s"}, "pool:/s"},
		{"default gw-queue", nil, "exec:"},
		{"empty values", map[string]string{"QMAILQUEUE": "", "GW_QUEUED": ""}, "exec:"},
	}
	for _, c := range cases {
		var got string
		switch i := Select(func(k string) string { return c.env[k] }).(type) {
		case *Exec:
			got = "exec:" + i.Path
			if c.want == "exec:" && strings.HasSuffix(i.Path, "gw-queue") {
				got = "exec:"
			}
		case *Pool:
			got = "pool:" + i.sock
		}
		if got != c.want {
			t.Errorf("%s: Select = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestExecDSNItems: gw's own injector gets the envelope's DSN items;
// any other QMAILQUEUE program gets qmail-queue's envelope alone, which
// it can read, rather than items it would refuse with 91.
func TestExecDSNItems(t *testing.T) {
	env := envelope.Envelope{Sender: "a@example.org", DSN: dsn.Mail{Ret: dsn.RetHdrs}}
	env.Add("b@example.net", dsn.Rcpt{Notify: dsn.NotifyNever})
	for _, c := range []struct {
		program string
		want    string
	}{
		{"gw-queue", "Fa@example.org\x00DRET=HDRS\x00Tb@example.net\x00NNOTIFY=NEVER\x00\x00"},
		{"gw-scan", "Fa@example.org\x00DRET=HDRS\x00Tb@example.net\x00NNOTIFY=NEVER\x00\x00"},
		{"qmail-queue", "Fa@example.org\x00Tb@example.net\x00\x00"},
		{"gw-queue-wrapper.sh", "Fa@example.org\x00Tb@example.net\x00\x00"},
	} {
		dir := t.TempDir()
		out := filepath.Join(dir, "env")
		p := filepath.Join(dir, c.program)
		if err := os.WriteFile(p, []byte("#!/bin/sh\ncat >/dev/null\ncat <&1 > "+out+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		inj := Select(func(k string) string {
			if k == "QMAILQUEUE" {
				return p
			}
			return ""
		})
		tx, err := inj.Begin(env)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(tx, "Subject: x\n\nbody\n")
		if code, err := tx.Commit(); code != 0 {
			t.Fatalf("%s: exit %d, %v", c.program, code, err)
		}
		if b, _ := os.ReadFile(out); string(b) != c.want {
			t.Errorf("%s read the envelope %q, want %q", c.program, b, c.want)
		}
	}
}

// TestPoolQID: a gw-queued of protocol version 2 names the queue id of
// each message it commits; one of version 1 refuses the hello, and the
// pool speaks version 1 to it: the message is queued, with no id.
func TestPoolQID(t *testing.T) {
	for _, c := range []struct {
		name string
		old  bool
		want string
	}{{"version 2", false, "0000000000001"}, {"version 1", true, ""}} {
		t.Run(c.name, func(t *testing.T) {
			f := startQueued(t)
			f.set(func() { f.old = c.old })
			p := &Pool{sock: f.path}
			for _, body := range []string{"held\n", strings.Repeat("streamed\n", replayLimit/4)} {
				tx, err := p.Begin(testEnv)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(tx, body)
				if code, err := tx.Commit(); code != 0 {
					t.Fatalf("Commit = %d, %v", code, err)
				}
				if got := QID(tx); got != c.want {
					t.Errorf("%d bytes: QID = %q, want %q", len(body), got, c.want)
				}
				if !c.old {
					c.want = "0000000000002"
				}
			}
			if n := len(f.queued()); n != 2 {
				t.Errorf("%d messages queued, want 2", n)
			}
		})
	}
}

// TestExecQID: an injector that writes its queue id on the descriptor
// GW_QIDFD names gives it to the listener; one that writes nothing there,
// or no queue id, gives none, and its exit code alone counts.
func TestExecQID(t *testing.T) {
	cases := []struct {
		name, script, want string
	}{
		{"gw-queue's way", `cat >/dev/null; cat <&1 >/dev/null; printf '0669a1b2c3d4e\n' >&$GW_QIDFD`, "0669a1b2c3d4e"},
		{"a qmail-queue that knows nothing of it", "cat >/dev/null; cat <&1 >/dev/null", ""},
		{"not a queue id", `cat >/dev/null; printf '250 ok\r\n' >&$GW_QIDFD`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx, err := (&Exec{Path: script(t, c.script)}).Begin(testEnv)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(tx, "x\n")
			if code, err := tx.Commit(); code != 0 {
				t.Fatalf("Commit = %d, %v", code, err)
			}
			if got := QID(tx); got != c.want {
				t.Errorf("QID = %q, want %q", got, c.want)
			}
		})
	}
	// A caller's own GW_QIDFD is not passed on: the injector gets fd 3.
	env := withQIDFD([]string{"GW_QIDFD=7", "PATH=/bin"})
	if len(env) != 2 || env[1] != "GW_QIDFD=3" {
		t.Errorf("withQIDFD = %q", env)
	}
}

// TestChooser: the injector is decided once from the process's
// environment; a client's rule that sets QMAILQUEUE or GW_QUEUED gets its
// own, the process's value standing for the variable the rule leaves out.
func TestChooser(t *testing.T) {
	process := map[string]string{"GW_QUEUED": "/run/inject.sock"}
	c := NewChooser(func(k string) string { return process[k] })
	process["GW_QUEUED"] = "/elsewhere" // read once: later changes do not count
	name := func(i Injector) string {
		switch i := i.(type) {
		case *Exec:
			return "exec:" + i.Path
		case *Pool:
			return "pool:" + i.sock
		}
		return "?"
	}
	rule := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	cases := []struct {
		name string
		rule func(string) (string, bool)
		want string
	}{
		{"no rule", nil, "pool:/run/inject.sock"},
		{"a rule that sets neither", rule(map[string]string{"RELAYCLIENT": ""}), "pool:/run/inject.sock"},
		{"a rule's QMAILQUEUE", rule(map[string]string{"QMAILQUEUE": "/bin/scan"}), "exec:/bin/scan"},
		{"a rule's GW_QUEUED", rule(map[string]string{"GW_QUEUED": "/other.sock"}), "pool:/other.sock"},
	}
	for _, tc := range cases {
		if got := name(c.For(tc.rule)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if c.For(nil) != c.Default() {
		t.Errorf("the default injector is made anew for each client")
	}
	// The Space is chosen the same way: the process's, or the rule's.
	if p := c.SpaceFor(rule(map[string]string{"RELAYCLIENT": ""})).Path; p != "/run/inject.sock" {
		t.Errorf("Space without a rule's queue: %q, want the process's socket", p)
	}
	if p := c.SpaceFor(rule(map[string]string{"GW_QUEUED": "/other.sock"})).Path; p != "/other.sock" {
		t.Errorf("Space of a rule's GW_QUEUED: %q", p)
	}
}

// TestExecPlainRequireTLS: a plain qmail-queue cannot keep REQUIRETLS;
// the message is refused for good (31) and the injector never gets the
// envelope's final NUL, so it queues nothing. A gw injector gets the R
// item.
func TestExecPlainRequireTLS(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	env := testEnv
	env.RequireTLS = true
	plain := &Exec{Path: script(t, "cat >/dev/null\ncat <&1 > "+out+"\n"), Plain: true}
	tx, err := plain.Begin(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, "x\n")
	if code, err := tx.Commit(); code != qq.Refused || err == nil || !strings.Contains(err.Error(), "REQUIRETLS") {
		t.Errorf("plain injector with REQUIRETLS: %d, %v; want 31 naming REQUIRETLS", code, err)
	}
	if b, _ := os.ReadFile(out); len(b) != 0 {
		t.Errorf("plain injector read envelope %q", b)
	}
	gw := &Exec{Path: script(t, "cat >/dev/null\ncat <&1 > "+out+"\n")}
	if code, err := send(t, gw, "x\n"); code != 0 {
		t.Fatalf("gw injector: %d, %v", code, err)
	}
	tx, err = gw.Begin(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, "x\n")
	if code, err := tx.Commit(); code != 0 {
		t.Fatalf("gw injector with REQUIRETLS: %d, %v", code, err)
	}
	if b, _ := os.ReadFile(out); string(b) != string(env.Wire()) || !strings.Contains(string(b), "\x00R\x00") {
		t.Errorf("gw injector's envelope %q, want the R item", b)
	}
}

// TestWithSession: the injector's environment names the message's
// session, never one the listener inherited, and never a bad one.
func TestWithSession(t *testing.T) {
	env := []string{"PATH=/bin", "GW_SID=inherited"}
	got := strings.Join(withSession(env, "s1"), " ")
	if got != "PATH=/bin GW_SID=s1" {
		t.Errorf("withSession(s1) = %s", got)
	}
	if got := strings.Join(withSession(env, "a b"), " "); got != "PATH=/bin" {
		t.Errorf("withSession(bad) = %s", got)
	}
	if env[1] != "GW_SID=inherited" {
		t.Errorf("the listener's environment was changed: %q", env)
	}
}

// TestPoolStreamsAfterRestart: gw-queued restarts while connections sit
// in the pool, and Begin takes one without asking the kernel about it. A
// message too big to be held cannot go twice, so its dead connection is
// found and replaced before its first chunk goes: every message is
// accepted, each once.
func TestPoolStreamsAfterRestart(t *testing.T) {
	f := startQueued(t)
	p := &Pool{sock: f.path}
	big := strings.Repeat("s", 3*replayLimit)
	var txs []Tx
	for i := 0; i < 3; i++ { // three connections in the pool
		tx, err := p.Begin(testEnv)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		io.WriteString(tx, big)
		if code, err := tx.Commit(); code != 0 {
			t.Fatalf("before the restart: %d %v", code, err)
		}
	}
	f.stop()
	f.listen(t)
	for i := 0; i < 3; i++ {
		if code, err := send(t, p, big); code != 0 {
			t.Errorf("message %d after the restart: %d %v", i, code, err)
		}
	}
	q := f.queued()
	if len(q) != 6 {
		t.Fatalf("%d messages queued, want 6", len(q))
	}
	for i, m := range q {
		if m != big {
			t.Errorf("message %d queued with %d bytes, want %d", i, len(m), len(big))
		}
	}
}

// TestPoolStreamingWhileDown: gw-queued is gone and the pooled connection
// with it; a message too big to be held finds no replacement. It is a
// temporary failure at Commit, and an Abort after it is safe.
func TestPoolStreamingWhileDown(t *testing.T) {
	f := startQueued(t)
	p := &Pool{sock: f.path, waitUp: time.Millisecond}
	var txs []Tx
	for i := 0; i < 2; i++ { // two connections in the pool
		tx, err := p.Begin(testEnv)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		io.WriteString(tx, "x\n")
		if code, err := tx.Commit(); code != 0 {
			t.Fatalf("before the stop: %d %v", code, err)
		}
	}
	f.stop()
	big := strings.Repeat("d", 2*replayLimit)
	if code, err := send(t, p, big); code != qq.ReadError || err == nil {
		t.Errorf("Commit with gw-queued down = %d, %v; want %d", code, err, qq.ReadError)
	}
	tx, err := p.Begin(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, big)
	tx.Abort()
	if n := len(f.queued()); n != 2 {
		t.Errorf("%d messages queued, want the 2 sent before the stop", n)
	}
}
