package tcpserver

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gw/lib/logline"
)

// echoListener serves a line protocol: each session waits idle for a
// line, answers it, and ends with "bye" when shutdown cut its wait.
func echoListener(t *testing.T) (addr string, ln net.Listener, served chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{Log: logline.New(io.Discard), Session: func(c net.Conn, _ func(string) (string, bool)) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if br.Buffered() == 0 && Idle(c, true) {
				io.WriteString(c, "bye\n")
				return
			}
			c.SetReadDeadline(time.Now().Add(time.Minute)) // a session's own deadline, kept cut
			line, err := br.ReadString('\n')
			Idle(c, false)
			if err != nil {
				if Closing(c) {
					io.WriteString(c, "bye\n")
				}
				return
			}
			io.WriteString(c, "echo "+line)
		}
	}}
	served = make(chan error, 1)
	go func() { served <- l.Serve(ln, time.Hour) }()
	return ln.Addr().String(), ln, served
}

func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// TestShutdownCutsIdleWaitsOnly: at shutdown a session waiting for its
// client ends at once, one whose client has already sent a request is
// served first, and Serve returns without waiting out the grace period.
func TestShutdownCutsIdleWaitsOnly(t *testing.T) {
	addr, ln, served := echoListener(t)
	idle, idleR := dialLine(t, addr)
	io.WriteString(idle, "one\n")
	if l, _ := idleR.ReadString('\n'); l != "echo one\n" {
		t.Fatalf("first answer %q", l)
	}
	early, earlyR := dialLine(t, addr)
	io.WriteString(early, "first\n")
	if l, _ := earlyR.ReadString('\n'); l != "echo first\n" {
		t.Fatalf("first answer %q", l)
	}
	// Sent before the shutdown: on loopback the write returns once the
	// bytes are in the server's socket, where shutdown finds them.
	io.WriteString(early, "in flight\n")
	ln.Close()
	if l, _ := idleR.ReadString('\n'); l != "bye\n" {
		t.Errorf("idle session at shutdown: %q, want bye", l)
	}
	if got := readAll(earlyR); got != "echo in flight\nbye\n" {
		t.Errorf("session with a request in flight: %q, want it answered, then bye", got)
	}
	// The grace period is an hour: Serve returns because no session is
	// left, not because the grace ran out.
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve still waits for sessions that should have ended")
	}
}

// TestPending: bytes the peer sent are seen without being read.
func TestPending(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if Pending(server) {
		t.Errorf("pending before the client wrote")
	}
	io.WriteString(client, "x")
	if !Pending(server) {
		t.Errorf("not pending after the client wrote")
	}
	if !Pending(server) {
		t.Errorf("the first look consumed the byte")
	}
	b := make([]byte, 1)
	if n, _ := server.Read(b); n != 1 || b[0] != 'x' {
		t.Errorf("read %q", b[:n])
	}
	if Pending(server) {
		t.Errorf("pending after the byte was read")
	}
}

func readAll(br *bufio.Reader) string {
	var b strings.Builder
	io.Copy(&b, br)
	return b.String()
}
