package tests

import (
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redisServer is a real redis-server on a private loopback port with no
// persistence, as two gw hosts of one site share it.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, addr string) *redisServer {
	t.Helper()
	return startRedisWith(t, addr)
}

// startRedisTLS is startRedis speaking TLS only (no plain port), with
// the test CA's certificate for localhost: what rediss:// reaches.
func startRedisTLS(t *testing.T, pki *testPKI) *redisServer {
	t.Helper()
	pki.issue(t, "redis", "localhost", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false, x509.ExtKeyUsageServerAuth)
	return startRedisWith(t, "", "--tls-cert-file", pki.file("redis.pem"), "--tls-key-file", pki.file("redis.key"),
		"--tls-auth-clients", "no")
}

// startRedisWith starts redis-server on addr (a free port when ""); with
// TLS options, that port is its TLS port and it has no plain one.
func startRedisWith(t *testing.T, addr string, tlsArgs ...string) *redisServer {
	t.Helper()
	need(t, "redis-server")
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"--bind", host, "--port", port}
	if len(tlsArgs) > 0 {
		args = append([]string{"--bind", host, "--port", "0", "--tls-port", port}, tlsArgs...)
	}
	cmd := exec.Command("redis-server", append(args, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisServer{addr: addr, cmd: cmd}
	t.Cleanup(r.stop)
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redis-server does not listen on %s", addr)
	return nil
}

func (r *redisServer) stop() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// fleetHost is one MX host of a two-host site: its own instance and
// queue, the shared Redis named in control/statebackend.
func fleetHost(t *testing.T, redis, rules string) (*smtpdInstance, string) {
	in := newFleetInstance(t, "redis://"+redis+"/0", rules, map[string]string{"greylistdelay": "3\n"})
	os.MkdirAll(filepath.Join(in.dir, "state"), 0o755)
	addr := in.standalone(t, nil, "--acl", filepath.Join(in.dir, "tcp.smtp.db"), "--greylist", filepath.Join(in.dir, "state", "greylist.db"))
	return in, addr
}

// newFleetInstance is the instance of one host of site1: the shared
// server at url, the listener's rules compiled into tcp.smtp.db, and
// control files besides.
func newFleetInstance(t *testing.T, url, rules string, files map[string]string) *smtpdInstance {
	t.Helper()
	control := map[string]string{"statebackend": url + "\n", "statebackendprefix": "site1:\n"}
	for k, v := range files {
		control[k] = v
	}
	in := newSMTPDInstance(t, control)
	db := filepath.Join(in.dir, "tcp.smtp.db")
	compile := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	compile.Stdin = strings.NewReader(rules)
	if out, err := compile.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	return in
}

// TestFleetSharedState: two gw-smtpd hosts share greylisting and a
// client's message limit through one redis-server; with the server gone
// each function follows its rule (greylisting accepts, limits count
// locally) and nothing accepted is lost; with it back they share again.
func TestFleetSharedState(t *testing.T) {
	redis := startRedis(t, "")
	const rules = ":allow,RATE_MSG=\"4/60s\"\n"
	a, hostA := fleetHost(t, redis.addr, rules)
	b, hostB := fleetHost(t, redis.addr, rules)
	send := func(host, rcpt string) (mail, rcptReply string) {
		out := swaks(t, host, "--from", "s@sender.example", "--to", rcpt)
		return replyTo(out, "MAIL FROM"), replyTo(out, "RCPT TO")
	}
	expect := func(step, got, want string) {
		t.Helper()
		if !strings.HasPrefix(got, want) {
			t.Fatalf("%s: got %q, want %s", step, got, want)
		}
	}

	_, r := send(hostA, "bob@example.com") // message 1 of the client
	expect("A, first try", r, "451 4.7.1")
	// The triplet was recorded before swaks returned, however long a
	// loaded machine took to start it: the delay counts from here.
	time.Sleep(3500 * time.Millisecond)
	_, r = send(hostB, "bob@example.com") // 2: the retry lands on the other MX
	expect("B, retry after the delay of a try made at A", r, "250 2.0.0")
	_, r = send(hostA, "carol@example.com") // 3: the network is whitelisted for both hosts
	expect("A, whitelisted network", r, "250 2.0.0")
	_, r = send(hostA, "dave@example.com") // 4
	expect("A, fourth message", r, "250 2.0.0")
	m, _ := send(hostB, "erin@example.com") // 5: over, counted at A and B together
	expect("B, fifth message, counted with A's", m, "451 4.7.0")
	if !strings.Contains(m, "try again in") {
		t.Errorf("the refusal does not say when the limit resets: %q", m)
	}

	redis.stop()
	_, r = send(hostA, "frank@example.com") // greylisting accepts, the limit counts locally (1 at A)
	expect("A, Redis down", r, "250 2.0.0")
	a.waitLog(t, "state=down")
	queued := len(a.messages(t)) + len(b.messages(t))
	if queued != 4 {
		t.Errorf("%d messages queued at A and B, want the 4 accepted", queued)
	}

	back := startRedis(t, redis.addr) // empty: no persistence
	_, r = send(hostB, "grace@example.com")
	expect("B, Redis back, first try", r, "451 4.7.1")
	time.Sleep(3500 * time.Millisecond)
	_, r = send(hostA, "grace@example.com")
	expect("A, retry of a try made at B after Redis came back", r, "250 2.0.0")
	a.waitLog(t, "state=up")
	back.stop()
	if n := len(a.messages(t)) + len(b.messages(t)); n != 5 {
		t.Errorf("%d messages queued, want 5", n)
	}
}

// TestFleetBansAndCallouts: what the hosts of a site share besides
// greylisting and counts, through one redis-server, the two hosts on two
// loopback addresses. A client (127.0.0.9) allowed one message a minute
// and banned after two refusals is banned at host A and then refused at
// host B's greeting, 421 4.7.0. A callout answer that host A got from the
// internal host (a gw-smtpd that knows bob) is the answer host B gives,
// without asking again: the internal host sees each recipient once.
func TestFleetBansAndCallouts(t *testing.T) {
	redis := startRedis(t, "")
	internal := newSMTPDInstance(t, map[string]string{"recipients/example.com": "bob\n"})
	iaddr := internal.standalone(t, nil)
	const rules = "127.0.0.9:allow,RATE_MSG=\"1/60s\",RATE_BAN=\"2/60s\"\n:allow\n"
	host := func(ip string) (*smtpdInstance, string) {
		in := newFleetInstance(t, "redis://"+redis.addr+"/0", rules, map[string]string{"callouts": "example.com:" + iaddr + "\n"})
		return in, in.listenerOn(t, ip, "gw-smtpd", nil, "--acl", filepath.Join(in.dir, "tcp.smtp.db"))
	}
	a, hostA := host("127.0.0.1")
	b, hostB := host("127.0.0.2")

	// Callouts, from a client with no limits.
	rcpts := func(addr string) []string {
		r := smtpdDialogue(t, addr, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<ghost@example.com>\r\nQUIT\r\n")
		if len(r) != 6 {
			t.Fatalf("replies %q", r)
		}
		return r[3:5]
	}
	asked := func() int {
		log, _ := os.ReadFile(internal.log)
		return strings.Count(string(log), "info rcpt ")
	}
	for _, step := range []struct {
		host, addr string
		asked      int
	}{{"A", hostA, 2}, {"B", hostB, 2}} {
		got := rcpts(step.addr)
		if !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "550 5.1.1") {
			t.Errorf("host %s answered bob and ghost %q, want 250 and 550 5.1.1", step.host, got)
		}
		if n := asked(); n != step.asked {
			t.Errorf("after host %s the internal host was asked %d recipients, want %d", step.host, n, step.asked)
		}
	}

	// The ban: set at A, refused at B.
	from := []string{"--local-interface", "127.0.0.9", "--from", "s@sender.example", "--to", "bob@example.com"}
	if r := replyTo(swaks(t, hostA, from...), "MAIL FROM"); !strings.HasPrefix(r, "250") {
		t.Fatalf("A, first message: MAIL %q", r)
	}
	for i := range 2 {
		if r := replyTo(swaks(t, hostA, from...), "MAIL FROM"); !strings.HasPrefix(r, "451 4.7.0") {
			t.Fatalf("A, message %d over the limit: MAIL %q, want 451 4.7.0", i+2, r)
		}
	}
	a.waitLog(t, "banned=true")
	out := swaks(t, hostB, from...)
	if !strings.Contains(out, "421 4.7.0 ip:127.0.0.9 is banned for repeated excess") {
		t.Errorf("B let the client banned at A in:\n%s", out)
	}
	if n := len(a.messages(t)) + len(b.messages(t)); n != 1 {
		t.Errorf("%d messages queued at A and B, want the one accepted", n)
	}
}

// TestFleetRedisTLS: the shared server over rediss://, its certificate
// from the test CA named in control/statebackendca, the server with no
// plain port at all. Host A takes the client's one message a minute and
// host B refuses the next, counted over TLS with A's. Host C, which
// trusts the system's roots only, does not accept the server's
// certificate: the server is down for it (alert statebackend
// state=down), and its limit counts locally.
func TestFleetRedisTLS(t *testing.T) {
	pki := newTestPKI(t)
	redis := startRedisTLS(t, pki)
	_, port, _ := net.SplitHostPort(redis.addr)
	url := "rediss://localhost:" + port + "/0"
	const rules = ":allow,RATE_MSG=\"1/60s\"\n"
	host := func(ip string, files map[string]string) (*smtpdInstance, string) {
		in := newFleetInstance(t, url, rules, files)
		return in, in.listenerOn(t, ip, "gw-smtpd", nil, "--acl", filepath.Join(in.dir, "tcp.smtp.db"))
	}
	ca := map[string]string{"statebackendca": pki.file("ca.pem") + "\n"}
	a, hostA := host("127.0.0.1", ca)
	b, hostB := host("127.0.0.2", ca)
	c, hostC := host("127.0.0.3", nil)
	send := func(addr string) string {
		return replyTo(swaks(t, addr, "--from", "s@sender.example", "--to", "bob@example.com"), "MAIL FROM")
	}
	if r := send(hostA); !strings.HasPrefix(r, "250") {
		t.Fatalf("A, first message: MAIL %q", r)
	}
	if r := send(hostB); !strings.HasPrefix(r, "451 4.7.0") {
		t.Fatalf("B, second message: MAIL %q, want 451 4.7.0 (counted with A's over TLS)", r)
	}
	if r := send(hostC); !strings.HasPrefix(r, "250") {
		t.Fatalf("C, its first local count: MAIL %q", r)
	}
	if log := c.waitLog(t, "state=down"); !strings.Contains(log, "certificate") {
		t.Errorf("C's alert does not say the certificate failed:\n%s", log)
	}
	for name, in := range map[string]*smtpdInstance{"A": a, "B": b} {
		if log, _ := os.ReadFile(in.log); strings.Contains(string(log), "state=down") {
			t.Errorf("host %s found the server down:\n%s", name, log)
		}
	}
}
