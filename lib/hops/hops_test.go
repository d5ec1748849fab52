package hops

import (
	"strings"
	"testing"
)

func TestCounter(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		hops      int
	}{
		{"none", "Subject: x\n\nReceived: in the body\n", 0},
		{"lf", "Received: a\nDelivered-To: b\nSubject: x\n\nbody\n", 2},
		{"crlf", "received: a\r\nDELIVERED-TO: b\r\n\r\nReceived: body\r\n", 2},
		{"folded line counts once", "Received: from a\n\tby b\nX: y\n\n", 1},
		{"not a prefix", "X-Received: a\nReceivedx: b\n\n", 0},
		{"header only", "Received: a\nReceived: b\n", 2},
	} {
		// Byte by byte and whole: the split must not matter.
		var whole, split Counter
		whole.Write([]byte(c.msg))
		for i := range len(c.msg) {
			split.Write([]byte{c.msg[i]})
		}
		if whole.Hops != c.hops || split.Hops != c.hops {
			t.Errorf("%s: hops %d (whole) %d (split), want %d", c.name, whole.Hops, split.Hops, c.hops)
		}
	}
	var c Counter
	if c.Write([]byte("Received: x\nSubject: y\n")); c.Done() {
		t.Error("done before the header's end")
	}
	if c.Write([]byte("\nReceived: body\n")); !c.Done() || c.Hops != 1 {
		t.Errorf("after the header: done %v, hops %d", c.Done(), c.Hops)
	}
	c = Counter{}
	c.Write([]byte(strings.Repeat("Received: x\n", Max-1) + "\n"))
	if c.Looping() {
		t.Errorf("%d hops looping", Max-1)
	}
	c = Counter{}
	c.Write([]byte(strings.Repeat("Delivered-To: x\r\n", Max) + "\r\n"))
	if !c.Looping() {
		t.Errorf("%d hops not looping", Max)
	}
}

// FuzzCounter holds the line-stepping Counter to the plain reading of the
// rule: split the text at LF, count Received: and Delivered-To: lines
// until the first empty one. Written in two pieces at any point, the
// count must be the same.
func FuzzCounter(f *testing.F) {
	f.Add([]byte("Received: a\r\nDelivered-To: b\r\n\r\nReceived: c\r\n"), 5)
	f.Add([]byte("received:\n\rDELIVERED-TO:x\n\n"), 13)
	f.Fuzz(func(t *testing.T, msg []byte, cut int) {
		if cut < 0 || cut > len(msg) {
			cut = len(msg) / 2
		}
		var c Counter
		c.Write(msg[:cut])
		c.Write(msg[cut:])
		want, done := 0, false
		lines := strings.Split(string(msg), "\n")
		for i, l := range lines {
			if i == len(lines)-1 {
				l = l[:min(len(l), prefixLen+1)] // unended: only its start is seen
			}
			l = strings.TrimSuffix(l, "\r")
			if i < len(lines)-1 && l == "" {
				done = true
				break
			}
			if i < len(lines)-1 && isTrace([]byte(l)) {
				want++
			}
		}
		if c.Hops != want || c.Done() != done {
			t.Fatalf("hops %d done %v, want %d %v", c.Hops, c.Done(), want, done)
		}
	})
}
