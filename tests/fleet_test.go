package tests

import (
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
	cmd := exec.Command("redis-server", "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no")
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
	in := newSMTPDInstance(t, map[string]string{
		"greylistdelay":      "3\n",
		"statebackend":       "redis://" + redis + "/0\n",
		"statebackendprefix": "site1:\n",
	})
	db := filepath.Join(in.dir, "tcp.smtp.db")
	compile := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	compile.Stdin = strings.NewReader(rules)
	if out, err := compile.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	os.MkdirAll(filepath.Join(in.dir, "state"), 0o755)
	addr := in.standalone(t, nil, "--acl", db, "--greylist", filepath.Join(in.dir, "state", "greylist.db"))
	return in, addr
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

	first := time.Now()
	_, r := send(hostA, "bob@example.com") // message 1 of the client
	expect("A, first try", r, "451 4.7.1")
	time.Sleep(time.Until(first.Add(3500 * time.Millisecond)))
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
	second := time.Now()
	_, r = send(hostB, "grace@example.com")
	expect("B, Redis back, first try", r, "451 4.7.1")
	time.Sleep(time.Until(second.Add(3500 * time.Millisecond)))
	_, r = send(hostA, "grace@example.com")
	expect("A, retry of a try made at B after Redis came back", r, "250 2.0.0")
	a.waitLog(t, "state=up")
	back.stop()
	if n := len(a.messages(t)) + len(b.messages(t)); n != 5 {
		t.Errorf("%d messages queued, want 5", n)
	}
}
