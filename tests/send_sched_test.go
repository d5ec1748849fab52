package tests

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is a loopback TCP port in front of a receiver: while shut it takes
// each connection and drops it before a greeting (a destination down as
// a whole); once opened it relays to the receiver.
type gate struct {
	port int
	open atomic.Bool
}

func startGate(t *testing.T, to string) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				c.Close()
				continue
			}
			go relay(c, to)
		}
	}()
	return g
}

func relay(c net.Conn, to string) {
	defer c.Close()
	r, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer r.Close()
	go func() { io.Copy(r, c); r.(*net.TCPConn).CloseWrite() }()
	io.Copy(c, r)
}

// qstatList runs gw-qstat list on the queue.
func qstatList(t *testing.T, queueDir string) string {
	t.Helper()
	out, err := exec.Command(bin("gw-qstat"), "--queue", queueDir, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("gw-qstat list: %v: %s", err, out)
	}
	return string(out)
}

// rcptLine returns the line of gw-qstat list's output about rcpt.
func rcptLine(list, rcpt string) string {
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, "\tremote\t"+rcpt) {
			return l
		}
	}
	return ""
}

// TestQctlRetryOverTheBackoff: a destination that drops every connection
// is backed off for an hour. A second message for it waits without an
// attempt of its own, and gw-qstat list shows when it will be tried and
// why it waits. The destination comes back; gw-qctl --domain retry sends
// both messages now, not when the hour is up.
func TestQctlRetryOverTheBackoff(t *testing.T) {
	rv := startReceiver(t)
	g := startGate(t, rv.addr)
	in := newSendInstance(t, map[string]string{"backoffmin": "3600", "backoffmax": "3600",
		"smtproutes": fmt.Sprintf("slow.test:[127.0.0.1]:%d", g.port)})
	in.start(t)
	first := in.inject(t, "a@gw.test", []string{"first@slow.test"}, "Subject: first\n\nx\n")
	waitFor(t, "the destination's backoff", 5*time.Second, func() bool { return len(in.lines("backoff")) == 1 })
	second := in.inject(t, "a@gw.test", []string{"second@slow.test"}, "Subject: second\n\nx\n")
	waitFor(t, "gw-send to take the second message", 5*time.Second, func() bool { return len(in.lines("new", "qid="+second)) == 1 })

	// gw-qstat list: the waiting recipient's next try is the backoff's
	// end, about an hour away, and its error the destination's.
	var line string
	waitFor(t, "gw-qstat to show the waiting recipient's next try", 5*time.Second, func() bool {
		line = rcptLine(qstatList(t, in.queue), "second@slow.test")
		return strings.Contains(line, "\tnext ") && strings.Contains(line, "\terror ")
	})
	if strings.Contains(line, "attempts") {
		t.Errorf("a recipient that never had an attempt shows some: %q", line)
	}
	for _, m := range in.messages(t) {
		if m.ID.String() == second {
			if wait := time.Until(m.Recipients[0].NextTry); wait < 55*time.Minute || wait > 61*time.Minute {
				t.Errorf("waiting recipient's next try in %v, want the backoff's end (~1 h)", wait)
			}
		}
	}

	g.open.Store(true)
	out, code := qctl(t, in.queue, "--domain", "slow.test", "retry")
	if code != 0 || !strings.Contains(out, first+" ok") || !strings.Contains(out, second+" ok") {
		t.Fatalf("gw-qctl --domain slow.test retry: exit %d, %q", code, out)
	}
	waitFor(t, "both messages delivered after the retry", 10*time.Second, func() bool { return len(rv.received()) == 2 })
}

// shiftArrival moves the arrival of the message in segment id of the
// queue by d and sets the record's checksum again: a message stamped by a
// clock that has since stepped back. The segment is gw-queue's: the magic
// line, one message record ('M', header length, header with the arrival
// at bytes 8..15, ..., CRC-32C) and a seal of 9 bytes.
func shiftArrival(t *testing.T, queueDir, id string, d time.Duration) {
	t.Helper()
	path := filepath.Join(queueDir, "seg", id)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const magic, seal = 8, 9
	rec := b[magic : len(b)-seal]
	at := rec[1+4+8:]
	arrival := int64(binary.BigEndian.Uint64(at))
	binary.BigEndian.PutUint64(at, uint64(arrival+int64(d)))
	sum := crc32.Checksum(rec[:len(rec)-4], crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(rec[len(rec)-4:], sum)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestSendArrivalAheadOfTheClock: a message whose arrival is a day ahead
// of the clock (the clock stepped back after gw-queue stamped it) fails
// temporarily; its next attempt comes within backoffmax (2 s), not a day
// later as the schedule counted from the arrival would have it.
func TestSendArrivalAheadOfTheClock(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	in := newSendInstance(t, map[string]string{"backoffmin": "1", "backoffmax": "2",
		"smtproutes": fmt.Sprintf("dead.test:[127.0.0.1]:%d", deadPort)})
	id := in.inject(t, "a@gw.test", []string{"u@dead.test"}, "Subject: ahead\n\nx\n")
	shiftArrival(t, in.queue, id, 24*time.Hour)
	if m := in.messages(t); len(m) != 1 || time.Until(m[0].Arrival) < 23*time.Hour {
		t.Fatalf("the shifted message: %+v", m)
	}
	in.start(t)
	waitFor(t, "the first deferral", 5*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) >= 1
	})
	waitFor(t, "a second attempt within backoffmax", 8*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+id, "result=deferred")) >= 2
	})
	for _, m := range in.messages(t) {
		if wait := time.Until(m.Recipients[0].NextTry); wait > 3*time.Second {
			t.Errorf("next try in %v, want at most backoffmax", wait)
		}
	}
}

// TestSendLifetimeNeedsAnOwnAttempt: a destination drops every
// connection; queuelifetime is 1 s, as after a forward jump of the clock.
// Two messages wait behind its backoff. The first gets its probe and
// bounces after it; the second is not bounced with it but waits for a
// connection attempt of its own, and bounces only after that failed.
func TestSendLifetimeNeedsAnOwnAttempt(t *testing.T) {
	rv := startReceiver(t)
	g := startGate(t, rv.addr) // shut throughout
	in := newSendInstance(t, map[string]string{"backoffmin": "3", "backoffmax": "6", "queuelifetime": "1",
		"smtproutes": fmt.Sprintf("down.test:[127.0.0.1]:%d", g.port)})
	in.start(t)
	opener := in.inject(t, "a@gw.test", []string{"opener@down.test"}, "Subject: opener\n\nx\n")
	waitFor(t, "the destination's backoff", 5*time.Second, func() bool { return len(in.lines("backoff")) == 1 })
	b1 := in.inject(t, "a@gw.test", []string{"b1@down.test"}, "Subject: b1\n\nx\n")
	b2 := in.inject(t, "a@gw.test", []string{"b2@down.test"}, "Subject: b2\n\nx\n")
	waitFor(t, "both to bounce", 20*time.Second, func() bool {
		return len(in.lines("delivery", "qid="+b1, "result=failed")) == 1 && len(in.lines("delivery", "qid="+b2, "result=failed")) == 1
	})
	for _, id := range []string{b1, b2} {
		if n := len(in.lines("connect", "qid="+id)); n == 0 {
			t.Errorf("message %s bounced for its age without a connection attempt of its own", id)
		}
	}
	_ = opener
}
