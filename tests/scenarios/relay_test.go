package scenarios

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
)

// Loopback addresses stand for hosts. The kernel answers on all of
// 127.0.0.0/8, and a connection to any of them leaves from 127.0.0.1.
const (
	internetClient = "127.0.0.2" // somewhere on the Internet
	lanClient      = "127.0.0.3" // a workstation of the organisation
)

// setACL writes acl/name of instance dir and compiles it with gw-tcprules.
func setACL(t *testing.T, dir, name, rules string) {
	t.Helper()
	src := filepath.Join(dir, "acl", name)
	write(t, dir, map[string]string{"acl/" + name: rules})
	cmd := exec.Command(bin("gw-tcprules"), src+".db", src+".tmp")
	f, err := openFile(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules %s: %v\n%s", src, err, out)
	}
}

// traceCount counts the Received lines a gw program added.
func traceCount(r received, program string) int {
	n := 0
	for _, v := range r.header("Received") {
		if strings.Contains(v, "("+program+")") || strings.Contains(v, "("+program+" ") {
			n++
		}
	}
	return n
}

// expectAt waits until subject arrived at s, once, for rcpt.
func expectAt(t *testing.T, s *sink, subject, rcpt string) received {
	t.Helper()
	waitFor(t, fmt.Sprintf("%q at %s", subject, s.addr), 30*time.Second, func() bool { return len(s.bySubject(t, subject)) > 0 })
	got := s.bySubject(t, subject)
	if len(got) != 1 {
		t.Fatalf("%q arrived %d times at %s, want once", subject, len(got), s.addr)
	}
	if len(got[0].rcpts) != 1 || got[0].rcpts[0] != rcpt {
		t.Errorf("%q at %s: recipients %v, want [%s]", subject, s.addr, got[0].rcpts, rcpt)
	}
	return got[0]
}

// TestOutsideInside is seed scenario 1: an outside instance takes mail
// from the Internet on one port and relays only for the LAN; gw-scan (with
// a real clamd) checks its mail before its queue (gw-instance --scan); it
// hands everything to an inside listener that accepts only from the
// outside instance's address; the inside instance routes the local
// domains by smtproutes to the students' and the staff's hosts and the
// rest by MX. Each message is scanned once; a virus never gets in.
// Everything runs under runsvdir.
func TestOutsideInside(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	dns := dnstest.Start(t)
	clamd := startClamd(t, dir)
	outsideAddr := freePort(t, "127.0.0.1")
	insideAddr := net.JoinHostPort("127.0.0.10", strings.Split(freePort(t, "127.0.0.10"), ":")[1])
	students := startSink(t, filepath.Join(dir, "students"), freePort(t, "127.0.0.20"))
	staff := startSink(t, filepath.Join(dir, "staff"), freePort(t, "127.0.0.21"))
	mxPort := strings.Split(freePort(t, "127.0.0.22"), ":")[1]
	world := startSink(t, filepath.Join(dir, "world"), "127.0.0.22:"+mxPort)
	dns.Add(t, "remote.test. MX 10 mx.remote.test.", "mx.remote.test. A 127.0.0.22")

	gwInstance(t, root, "create", "outside", "--smtp", outsideAddr, "--me", "mx.example.test",
		"--rcpthosts", "students.test", "--rcpthosts", "staff.test", "--relay", lanClient,
		"--smarthost", insideAddr, "--env", "GW_DNS="+dns.Addr, "--scan")
	write(t, filepath.Join(root, "outside"), map[string]string{"control/clamd": clamd + "\n"})
	gwInstance(t, root, "create", "inside", "--smtp", insideAddr, "--me", "inside.example.test",
		"--rcpthosts", "students.test", "--rcpthosts", "staff.test", "--env", "GW_DNS="+dns.Addr)
	in := filepath.Join(root, "inside")
	// The inside listener takes mail only from the outside instance's
	// deliveries, which leave from 127.0.0.1, and lets them relay.
	setACL(t, in, "tcp.smtp", "127.0.0.1:allow,RELAYCLIENT=\"\"\n:deny\n")
	write(t, in, map[string]string{
		"control/smtproutes": "students.test:" + students.addr + "\nstaff.test:" + staff.addr + "\n",
		"control/smtpport":   mxPort + "\n",
		"control/dnsserver":  dns.Addr + "\n",
	})
	gwInstance(t, root, "check", "outside", "inside")

	sup := startSupervisor(t, "runit", dir)
	gwInstance(t, root, "link", "outside", sup.scan)
	gwInstance(t, root, "link", "inside", sup.scan)
	sup.up(t, 6)
	waitFor(t, "both listeners", 10*time.Second, func() bool { return listening(outsideAddr) && listening(insideAddr) })
	if l := gwInstance(t, root, "list"); !strings.Contains(l, "smtpd:up") {
		t.Errorf("gw-instance list does not show the services up:\n%s", l)
	}

	inet := []string{"--local-interface", internetClient}
	lan := []string{"--local-interface", lanClient}
	mustSend(t, outsideAddr, "someone@elsewhere.test", "alice@students.test", "to a student", inet...)
	mustSend(t, outsideAddr, "someone@elsewhere.test", "bob@staff.test", "to the staff", inet...)
	mustRefuse(t, outsideAddr, "spammer@elsewhere.test", "victim@remote.test", "553", inet...)
	mustRefuse(t, outsideAddr, "someone@elsewhere.test", "carol@other.test", "553", inet...)
	mustSend(t, outsideAddr, "bob@staff.test", "friend@remote.test", "from the LAN", lan...)
	virus := []string{"--body", "here it is: " + virusMarker + "\n"}
	mustRefuse(t, outsideAddr, "someone@elsewhere.test", "alice@students.test", "554 5.3.0", append(virus, inet...)...)
	mustRefuse(t, outsideAddr, "bob@staff.test", "friend@remote.test", "554 5.3.0", append(virus, lan...)...)
	// The inside port is not for the Internet: the ACL closes the door.
	if out, code := swaks(t, append([]string{"--server", insideAddr, "--to", "alice@students.test"}, inet...)...); code == 0 {
		t.Errorf("inside listener accepted a message from %s:\n%s", internetClient, out)
	}

	for _, c := range []struct {
		s             *sink
		subject, rcpt string
	}{
		{students, "to a student", "alice@students.test"},
		{staff, "to the staff", "bob@staff.test"},
		{world, "from the LAN", "friend@remote.test"},
	} {
		r := expectAt(t, c.s, c.subject, c.rcpt)
		// One trace line by each listener: the outside's and the inside's.
		if n := traceCount(r, "gw-smtpd"); n != 2 {
			t.Errorf("%q: %d gw-smtpd Received lines, want 2:\n%s", c.subject, n, r.text)
		}
		// Scanned once: by the outside instance, before its queue.
		if n := len(r.header("X-Virus-Scanned")); n != 1 {
			t.Errorf("%q: %d X-Virus-Scanned headers, want 1:\n%s", c.subject, n, r.text)
		}
		if got := r.header("X-Client-Addr"); len(got) == 0 || got[0] != "127.0.0.1" {
			t.Errorf("%q reached %s from %v, want the inside instance on 127.0.0.1", c.subject, c.s.addr, got)
		}
	}
	for _, s := range []*sink{students, staff, world} {
		if n := len(s.messages(t)); n != 1 {
			t.Errorf("%s holds %d transactions, want 1", s.addr, n)
		}
		for _, r := range s.messages(t) {
			if strings.Contains(r.text, virusMarker) {
				t.Errorf("the virus reached %s:\n%s", s.addr, r.text)
			}
		}
	}
	waitFor(t, "both queues to empty", 20*time.Second, func() bool {
		return queued(t, root, "outside") == 0 && queued(t, root, "inside") == 0
	})
	if log := sup.logOf("inside-smtpd"); !strings.Contains(log, "ip=127.0.0.1") {
		t.Errorf("inside-smtpd's log (svlogd) shows no session from 127.0.0.1:\n%s", tailLines(log, 20))
	}
}

// TestTwoFaces is seed scenario 4 under daemontools: one instance with
// two listeners. The Internet face never relays, not even for the LAN;
// the inside face takes only the LAN and relays for it to the smarthost.
// Mail for the local domain goes to the internal host by smtproutes.
func TestTwoFaces(t *testing.T) {
	dir := workDir(t)
	root := filepath.Join(dir, "gw")
	outsideAddr := freePort(t, "127.0.0.1")
	insideAddr := freePort(t, "127.0.0.1")
	smarthost := startSink(t, filepath.Join(dir, "smarthost"), freePort(t, "127.0.0.30"))
	internal := startSink(t, filepath.Join(dir, "internal"), freePort(t, "127.0.0.31"))

	gwInstance(t, root, "create", "gw", "--supervisor", "daemontools", "--smtp", outsideAddr,
		"--me", "mx.example.test", "--rcpthosts", "local.test", "--smarthost", smarthost.addr)
	d := filepath.Join(root, "gw")
	setACL(t, d, "tcp.smtp", ":allow\n") // the Internet face: no RELAYCLIENT for anyone
	gwInstance(t, root, "listen", "gw", "inside", "smtp", insideAddr, "--acl", "tcp.inside")
	setACL(t, d, "tcp.inside", lanClient+":allow,RELAYCLIENT=\"\"\n:deny\n")
	write(t, d, map[string]string{"control/smtproutes": "local.test:" + internal.addr + "\n:" + smarthost.addr + "\n"})
	gwInstance(t, root, "check", "gw")

	sup := startSupervisor(t, "daemontools", dir)
	gwInstance(t, root, "link", "gw", sup.scan)
	sup.up(t, 4)
	waitFor(t, "both faces", 10*time.Second, func() bool { return listening(outsideAddr) && listening(insideAddr) })

	inet := []string{"--local-interface", internetClient}
	lan := []string{"--local-interface", lanClient}
	mustRefuse(t, outsideAddr, "user@local.test", "friend@remote.test", "553", lan...)
	mustSend(t, insideAddr, "user@local.test", "friend@remote.test", "out by the smarthost", lan...)
	if out, code := swaks(t, append([]string{"--server", insideAddr, "--to", "friend@remote.test"}, inet...)...); code == 0 {
		t.Errorf("inside face accepted the Internet:\n%s", out)
	}
	mustSend(t, outsideAddr, "someone@elsewhere.test", "user@local.test", "in from the Internet", inet...)

	r := expectAt(t, smarthost, "out by the smarthost", "friend@remote.test")
	if n := traceCount(r, "gw-smtpd"); n != 1 {
		t.Errorf("%d gw-smtpd Received lines, want 1:\n%s", n, r.text)
	}
	expectAt(t, internal, "in from the Internet", "user@local.test")
	if n := len(smarthost.messages(t)) + len(internal.messages(t)); n != 2 {
		t.Errorf("receivers hold %d transactions, want 2", n)
	}
	waitFor(t, "the queue to empty", 20*time.Second, func() bool { return queued(t, root, "gw") == 0 })
	if log := sup.logOf("gw-inside"); !strings.HasPrefix(log, "@4000") {
		t.Errorf("gw-inside's log is not multilog's (TAI64N stamps):\n%s", tailLines(log, 5))
	}
}
