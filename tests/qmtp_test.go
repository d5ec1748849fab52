package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gw/lib/qmtp"
)

// qmtpdStandalone runs gw-qmtpd listening itself on a free loopback port,
// in the instance in (control, queue, log) with extra environment.
func (in *smtpdInstance) qmtpdStandalone(t *testing.T, env []string, args ...string) string {
	t.Helper()
	return in.listener(t, "gw-qmtpd", env, args...)
}

// qmtpPackage is one package in LF encoding.
func qmtpPackage(msg, sender string, rcpts ...string) string {
	var list []byte
	for _, r := range rcpts {
		list = qmtp.Append(list, r)
	}
	return string(qmtp.Append(qmtp.Append(qmtp.Append(nil, "\n"+msg), sender), string(list)))
}

// TestQMTPSendToQMTPD: gw-send delivers over QMTP to gw-qmtpd; every
// outcome (K, Z, D) lands as delivered, deferred, failed; messages share
// connections.
func TestQMTPSendToQMTPD(t *testing.T) {
	rcv := newSMTPDInstance(t, nil)
	addr := rcv.qmtpdStandalone(t, nil)
	tmp := newSMTPDInstance(t, nil)
	script := filepath.Join(tmp.dir, "qq-disk-full")
	os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\nexit 53\n"), 0o755)
	tempAddr := tmp.qmtpdStandalone(t, []string{"QMAILQUEUE=" + script})
	d := dnsFor(t)
	routes := fmt.Sprintf("example.com:%s\nother.test:%s\ntempfail.example.org:%s", addr, addr, tempAddr)
	routes = strings.ReplaceAll(routes, "127.0.0.1:", "127.0.0.1;") // s/qmail's port separator
	snd := newSendInstance(t, map[string]string{"qmtproutes": routes, "dnsserver": d.Addr})
	const n = 40
	for i := range n {
		snd.inject(t, "a@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	mixed := snd.inject(t, "a@sender.test", []string{"ok@example.com", "no@other.test", "later@tempfail.example.org"}, "Subject: mixed\n\nx\n")
	snd.start(t)
	waitFor(t, "the deliveries", 15*time.Second, func() bool {
		return len(snd.lines("delivery", "result=delivered")) == n+1 && len(snd.lines("delivery", "qid="+mixed, "result=deferred")) == 1
	})
	if len(snd.lines("delivery", "qid="+mixed, "rcpt=no@other.test", "result=failed")) != 1 {
		t.Errorf("no failure for no@other.test:\n%s", snd.log.String())
	}
	if l := snd.lines("delivery", "qid="+mixed, "rcpt=later@tempfail.example.org", "result=deferred"); len(l) != 1 || !strings.Contains(l[0], "disk full") {
		t.Errorf("deferral for later@tempfail.example.org: %q", l)
	}
	msgs := rcv.messages(t)
	if len(msgs) != n+1 {
		t.Fatalf("receiver queued %d messages, want %d", len(msgs), n+1)
	}
	for _, m := range msgs {
		body := rcv.body(t, m)
		if m.Sender != "a@sender.test" || len(m.Recipients) != 1 || !strings.Contains(body, " with QMTP; ") || !strings.Contains(body, "Received: (gw-queue") {
			t.Errorf("queued %s -> %v:\n%s", m.Sender, m.Recipients, body)
		}
	}
	log, _ := os.ReadFile(rcv.log)
	conns := strings.Count(string(log), "info connect ")
	t.Logf("%d messages over %d connections", n+1, conns)
	if conns >= n/2 {
		t.Errorf("%d connections for %d messages: not shared", conns, n+1)
	}
}

// TestQMTPDUnderTcpserverSpecBytes replays the spec's examples through
// the real tcpserver, with RELAYCLIENT from tcprules.
func TestQMTPDUnderTcpserverSpecBytes(t *testing.T) {
	need(t, "tcpserver")
	need(t, "tcprules")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	cdb := filepath.Join(in.dir, "tcp.qmtp.cdb")
	c := exec.Command("tcprules", cdb, cdb+".tmp")
	c.Stdin = strings.NewReader("127.0.0.2:allow,RELAYCLIENT=\"\"\n:allow\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("tcprules: %v\n%s", err, out)
	}
	cmd := exec.Command("tcpserver", "-1", "-R", "-H", "-l", "gw.example.net", "-x", cdb, "127.0.0.1", "0", bin("gw-qmtpd"), "--control-dir", in.control)
	cmd.Env = in.env()
	out, _ := cmd.StdoutPipe()
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(port)
	spec := "20:\nSubject: hi\n\nhello\n,13:a@example.org,34:13:b@example.net,13:c@example.net,," +
		"23:\rSubject: hi\r\n\r\nhello\r\n,0:,17:13:b@example.net,," +
		"2:\na,0:,17:13:b@example.com,,"
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, spec)
	conn.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(conn)
	conn.Close()
	br := bufio.NewReader(strings.NewReader(string(resp)))
	var got []string
	for {
		s, _, err := qmtp.ReadString(br, qmtp.MaxResponse, qmtp.MaxResponse)
		if err != nil {
			break
		}
		got = append(got, string(s))
	}
	if len(got) != 4 || got[0][0] != 'K' || got[1] != got[0] || got[2][0] != 'K' ||
		got[3] != "Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)" {
		t.Fatalf("responses %q", resp)
	}
	msgs := in.messages(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}
	for _, m := range msgs {
		body := in.body(t, m)
		if !strings.HasSuffix(body, "\nSubject: hi\n\nhello\n") || !strings.Contains(body, "Received: from unknown (127.0.0.1)\n  by gw.example.net with QMTP; ") {
			t.Errorf("stored %q", body)
		}
	}
}

// TestQMTPDKilledMidPackage: gw-qmtpd is killed (SIGKILL) while a
// pipelined package is on its way. Every message that got K is in the
// queue, and none other: the package cut off is not, nor are the whole
// ones sent after it never got a response for... (there are none: the
// cut is the last thing sent).
func TestQMTPDKilledMidPackage(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			in := newSMTPDInstance(t, nil)
			addr := in.qmtpdStandalone(t, nil)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			msg := func(i int) string {
				return fmt.Sprintf("Subject: k%d\n\n%s\n", i, strings.Repeat("x", 1000))
			}
			full := 10 + 7*round
			var b strings.Builder
			for i := range full {
				b.WriteString(qmtpPackage(msg(i), "a@sender.test", fmt.Sprintf("u%d@example.com", i)))
			}
			cut := qmtpPackage(msg(full), "a@sender.test", "cut@example.com")
			// The last package stops inside the message, inside the
			// sender, or inside the recipients, by round.
			at := []int{len(cut) / 3, len(cut) - 20, len(cut) - 2}[round]
			b.WriteString(cut[:at])
			io.WriteString(conn, b.String())
			br := bufio.NewReader(conn)
			ks := map[string]bool{}
			for i := range full {
				s, _, err := qmtp.ReadString(br, qmtp.MaxResponse, qmtp.MaxResponse)
				if err != nil || s[0] != 'K' {
					t.Fatalf("response %d: %q %v", i, s, err)
				}
				ks[fmt.Sprintf("k%d", i)] = true
			}
			in.cmd.Process.Signal(syscall.SIGKILL)
			in.cmd.Wait()
			time.Sleep(300 * time.Millisecond) // an orphaned gw-queue sees its pipes close
			queued := map[string]bool{}
			for _, m := range in.messages(t) {
				body := in.body(t, m)
				i := strings.Index(body, "Subject: ")
				queued[strings.Fields(body[i+9:])[0]] = true
			}
			for k := range ks {
				if !queued[k] {
					t.Errorf("%s got K and is not in the queue", k)
				}
			}
			for k := range queued {
				if !ks[k] {
					t.Errorf("%s is in the queue without a K", k)
				}
			}
		})
	}
}

// TestQMTPDKilledWhilePipelining kills gw-qmtpd at a random moment while
// a client keeps packages flowing: every K'd message is queued, and a
// message is queued only if its package was sent whole (the one window
// where a message may be queued without its K reaching the client, which
// the client then retries: a duplicate, never a loss).
func TestQMTPDKilledWhilePipelining(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.qmtpdStandalone(t, nil)
	q, err := qmtp.Dial(context.Background(), addr, time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ks, sent := map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%dm%d", w, i)
				body := fmt.Sprintf("Subject: %s\n\n%s\n", name, strings.Repeat("y", 1000))
				p, err := q.Send("a@sender.test", []string{name + "@example.com"}, int64(len(body)), strings.NewReader(body))
				if err != nil {
					return
				}
				mu.Lock()
				sent[name] = true
				mu.Unlock()
				go func() {
					if r, err := p.Wait(context.Background()); err == nil && r[0].Code == 'K' {
						mu.Lock()
						ks[name] = true
						mu.Unlock()
					}
				}()
			}
		}()
	}
	waitFor(t, "some K responses", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(ks) >= 30 })
	in.cmd.Process.Signal(syscall.SIGKILL)
	in.cmd.Wait()
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	queued := map[string]bool{}
	for _, m := range in.messages(t) {
		queued[strings.TrimSuffix(m.Recipients[0].Address, "@example.com")] = true
	}
	for k := range ks {
		if !queued[k] {
			t.Errorf("%s got K and is not in the queue", k)
		}
	}
	extra := 0
	for k := range queued {
		if !sent[k] {
			t.Errorf("%s is queued but its package was never sent whole", k)
		}
		if !ks[k] {
			extra++
		}
	}
	t.Logf("%d sent whole, %d K, %d queued (%d without K: the commit-to-answer window)", len(sent), len(ks), len(queued), extra)
}

// TestQMTPDManPageOptions keeps gw-qmtpd.8 and the program together:
// every flag is in the page's OPTIONS, and every option there is a flag.
func TestQMTPDManPageOptions(t *testing.T) {
	page, err := os.ReadFile("../man/gw-qmtpd.8")
	if err != nil {
		t.Fatal(err)
	}
	_, opts, _ := strings.Cut(string(page), "\n.Sh OPTIONS\n")
	opts, _, _ = strings.Cut(opts, "\n.Sh ")
	documented := map[string]bool{}
	for _, l := range strings.Split(opts, "\n") {
		if f, ok := strings.CutPrefix(l, ".It Fl -"); ok {
			documented[strings.Fields(f)[0]] = true
		}
	}
	help, _ := exec.Command(bin("gw-qmtpd"), "--help").CombinedOutput()
	have := map[string]bool{}
	for _, l := range strings.Split(string(help), "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(l), "--"); ok {
			name := strings.TrimRight(strings.Fields(f)[0], ",")
			if name != "help" && name != "version" {
				have[name] = true
			}
		}
	}
	if len(have) < 7 {
		t.Fatalf("flags %v from gw-qmtpd --help:\n%s", have, help)
	}
	for f := range have {
		if !documented[f] {
			t.Errorf("--%s is not in gw-qmtpd.8 OPTIONS", f)
		}
	}
	for f := range documented {
		if !have[f] {
			t.Errorf("gw-qmtpd.8 documents --%s, which the program lacks", f)
		}
	}
}
