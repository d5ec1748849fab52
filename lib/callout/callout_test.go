package callout

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gw/lib/route"
	"gw/lib/smtpd"
)

// scriptedHost is an SMTP server on loopback that answers RCPT from a
// table (default 550) and every other command as its fields say.
type scriptedHost struct {
	addr     string
	greeting string            // default "220 internal.example ESMTP"
	mail     string            // reply to MAIL; default "250 ok"
	rcpt     map[string]string // address → reply
	silent   bool              // accept and never say a word
	raw      string            // sent instead of the greeting, then close
	conns    atomic.Int32
}

func (h *scriptedHost) start(t *testing.T) *scriptedHost {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			go h.serve(c)
		}
	}()
	return h
}

func (h *scriptedHost) serve(c net.Conn) {
	defer c.Close()
	if h.silent {
		time.Sleep(3 * time.Second)
		return
	}
	if h.raw != "" {
		c.Write([]byte(h.raw))
		return
	}
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	say(or(h.greeting, "220 internal.example ESMTP"))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-internal.example\r\n250-PIPELINING\r\n250 8BITMIME")
		case "MAIL":
			say(or(h.mail, "250 ok"))
		case "RCPT":
			addr := strings.TrimSuffix(strings.TrimPrefix(arg, "TO:<"), ">")
			say(or(h.rcpt[addr], "550 5.1.1 no such user"))
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 what")
		}
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func checker(t *testing.T, callouts []string, cache bool) *Checker {
	t.Helper()
	tab, err := route.Parse(route.SMTP, callouts)
	if err != nil {
		t.Fatal(err)
	}
	sr, _ := route.Parse(route.SMTP, []string{"routed.example:127.0.0.1:1"})
	c := &Checker{Callouts: tab, SMTPRoutes: sr, Helo: "gw.example.net", Timeout: time.Second, ConnectTimeout: time.Second,
		PositiveTTL: time.Hour, NegativeTTL: time.Minute, Now: time.Now}
	if cache {
		c.Cache = &Cache{Path: filepath.Join(t.TempDir(), "callout.db")}
	}
	return c
}

func TestVerifyAnswers(t *testing.T) {
	cases := []struct {
		name string
		host *scriptedHost
		rcpt string
		want smtpd.Verdict
	}{
		{"exists", &scriptedHost{rcpt: map[string]string{"bob@example.com": "250 2.1.5 ok"}}, "bob", smtpd.Exists},
		{"unknown", &scriptedHost{}, "ghost", smtpd.Unknown},
		{"host says later", &scriptedHost{rcpt: map[string]string{"full@example.com": "452 4.2.2 mailbox full"}}, "full", smtpd.Unverified},
		{"probe sender refused", &scriptedHost{mail: "553 5.7.1 no null senders"}, "bob", smtpd.Unverified},
		{"greeting refuses", &scriptedHost{greeting: "554 go away"}, "bob", smtpd.Unverified},
		{"multi-line greeting", &scriptedHost{greeting: "220-internal\r\n220-still\r\n220 internal", rcpt: map[string]string{"bob@example.com": "250 ok"}}, "bob", smtpd.Exists},
		{"silent host times out", &scriptedHost{silent: true}, "bob", smtpd.Unverified},
		{"garbage", &scriptedHost{raw: "HELLO THERE\r\n"}, "bob", smtpd.Unverified},
		{"no line end", &scriptedHost{raw: strings.Repeat("2", 10000)}, "bob", smtpd.Unverified},
		{"endless reply", &scriptedHost{raw: strings.Repeat("220-more\r\n", 200)}, "bob", smtpd.Unverified},
		{"code out of range", &scriptedHost{raw: "999 what\r\n"}, "bob", smtpd.Unverified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.host.start(t)
			ck := checker(t, []string{"example.com:" + h.addr}, false)
			start := time.Now()
			got, detail := ck.Verify(c.rcpt, "example.com")
			if got != c.want {
				t.Errorf("Verify(%s) = %v (%s), want %v", c.rcpt, got, detail, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, over the callout timeout", d)
			}
		})
	}
}

func TestVerifyRouting(t *testing.T) {
	ck := checker(t, []string{"example.com:10.0.0.1", ".example.org:[10.0.0.2]:2525", "routed.example:", "mx.example:"}, false)
	cases := map[string]string{
		"example.com":      "10.0.0.1:25",
		"EXAMPLE.COM":      "10.0.0.1:25",
		"a.example.org":    "10.0.0.2:2525",
		"example.org":      "",
		"routed.example":   "127.0.0.1:1", // "domain:" takes smtproutes' host
		"mx.example":       "",            // no smtproutes entry: MX, not verified
		"other.example":    "",
		"example.com.evil": "",
	}
	for d, want := range cases {
		if got := ck.Host(d); got != want {
			t.Errorf("Host(%q) = %q, want %q", d, got, want)
		}
	}
	if v, _ := ck.Verify("bob", "other.example"); v != smtpd.NotVerified {
		t.Errorf("unlisted domain: %v", v)
	}
}

// TestVerifyCache: final answers are cached (one connection for two
// questions), temporary ones are not, and a dead host is not asked again
// for a while.
func TestVerifyCache(t *testing.T) {
	h := (&scriptedHost{rcpt: map[string]string{"bob@example.com": "250 ok", "full@example.com": "450 later"}}).start(t)
	ck := checker(t, []string{"example.com:" + h.addr}, true)
	for i, step := range []struct {
		rcpt  string
		want  smtpd.Verdict
		conns int32
	}{
		{"bob", smtpd.Exists, 1}, {"bob", smtpd.Exists, 1},
		{"ghost", smtpd.Unknown, 2}, {"ghost", smtpd.Unknown, 2},
		{"full", smtpd.Unverified, 3}, {"full", smtpd.Unverified, 4},
	} {
		if got, detail := ck.Verify(step.rcpt, "example.com"); got != step.want {
			t.Errorf("step %d: %s = %v (%s), want %v", i, step.rcpt, got, detail, step.want)
		}
		if n := h.conns.Load(); n != step.conns {
			t.Errorf("step %d: %d connections, want %d", i, n, step.conns)
		}
	}
	// The negative answer expires after NegativeTTL.
	ck.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	ck.Verify("ghost", "example.com")
	if n := h.conns.Load(); n != 5 {
		t.Errorf("expired negative answer: %d connections, want 5", n)
	}

	// A closed port: unverified, then not asked again.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	dials := 0
	ck2 := checker(t, []string{"example.com:" + dead}, false)
	ck2.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		dials++
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	for i := 0; i < 3; i++ {
		if v, _ := ck2.Verify("bob", "example.com"); v != smtpd.Unverified {
			t.Errorf("dead host: %v", v)
		}
	}
	if dials != 1 {
		t.Errorf("dead host dialled %d times, want 1", dials)
	}
}

func TestCacheHostileValues(t *testing.T) {
	now := time.Unix(2e9, 0)
	future := now.Add(time.Hour).Unix()
	stamp := func(v byte, until int64) []byte {
		b := []byte{v, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := 0; i < 8; i++ {
			b[8-i] = byte(until >> (8 * i))
		}
		return b
	}
	cases := []struct {
		name string
		val  []byte
		ok   bool
	}{
		{"exists", stamp(1, future), true},
		{"unknown", stamp(2, future), true},
		{"expired", stamp(1, now.Unix()), false},
		{"unverified never believed", stamp(3, future), false},
		{"not verified never believed", stamp(0, future), false},
		{"bad verdict", stamp(200, future), false},
		{"short", []byte{1, 2, 3}, false},
		{"empty", nil, false},
		{"long", append(stamp(1, future), 0), false},
	}
	for _, c := range cases {
		if _, ok := decode(c.val, now); ok != c.ok {
			t.Errorf("%s: decode(%x) ok = %v, want %v", c.name, c.val, ok, c.ok)
		}
	}
}

// TestStoredVerdictNumbers pins the bytes the cache stores: they are on
// disk, so they never change, whatever happens to smtpd.Verdict. A record
// written before the bytes had names of their own (1 exists, 2 unknown)
// reads as it was written; the verdicts that are not final are never
// stored.
func TestStoredVerdictNumbers(t *testing.T) {
	for v, want := range map[smtpd.Verdict]byte{smtpd.Exists: 1, smtpd.Unknown: 2} {
		if got, ok := storedByte(v); !ok || got != want {
			t.Errorf("verdict %d stored as %d (%v), want %d", v, got, ok, want)
		}
	}
	for _, v := range []smtpd.Verdict{smtpd.NotVerified, smtpd.Unverified} {
		if _, ok := storedByte(v); ok {
			t.Errorf("verdict %d would be stored", v)
		}
	}
	now := time.Unix(2e9, 0)
	old := func(b byte) []byte { // as the cache wrote them before
		return append([]byte{b}, 0, 0, 0, 0, 0x77, 0x35, 0x94, 0x00+0x10) // 2e9 + 16 s
	}
	for b, want := range map[byte]smtpd.Verdict{1: smtpd.Exists, 2: smtpd.Unknown} {
		if got, ok := decode(old(b), now); !ok || got != want {
			t.Errorf("an old record with byte %d reads as %d (%v), want %d", b, got, ok, want)
		}
	}

	// Through the file: what Put stores is the pinned byte.
	c := &Cache{Path: filepath.Join(t.TempDir(), "callout.db")}
	if err := c.Put("example.com\x00a", smtpd.Unknown, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.Put("example.com\x00b", smtpd.Unverified, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(c.Path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAnswers)
		if v := b.Get([]byte("example.com\x00a")); len(v) != 9 || v[0] != 2 {
			t.Errorf("unknown stored as %x, want 02 and the expiry", v)
		}
		if v := b.Get([]byte("example.com\x00b")); v != nil {
			t.Errorf("unverified stored as %x", v)
		}
		return nil
	})
}
