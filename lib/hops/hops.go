// Package hops counts the trace lines of a message as it streams past:
// Received and Delivered-To lines in the header. A message that has
// passed through too many hosts is in a loop; qmail refuses it at 100.
package hops

import "bytes"

// Max is the count at which a message is looping (qmail's MAXHOPS).
const Max = 100

// prefixLen is as much of a line as Delivered-To: needs.
const prefixLen = len("delivered-to:")

// Counter counts trace lines in the header written to it; it ignores
// everything after the header's empty line. Lines may end in LF or CRLF.
// The zero value is ready; it never keeps more than a line's start.
type Counter struct {
	Hops   int
	done   bool // past the header
	prefix []byte
}

// Write scans p; it never fails. It steps from line end to line end
// (bytes.IndexByte) rather than byte by byte: a header of long lines,
// or a message with no empty line at all, costs a search, not a loop.
func (c *Counter) Write(p []byte) (int, error) {
	n := len(p)
	for !c.done && len(p) > 0 {
		nl := bytes.IndexByte(p, '\n')
		part := p
		if nl >= 0 {
			part = p[:nl]
		}
		if room := prefixLen + 1 - len(c.prefix); room > 0 {
			c.prefix = append(c.prefix, part[:min(room, len(part))]...)
		}
		if nl < 0 {
			break
		}
		p = p[nl+1:]
		line := bytes.TrimSuffix(c.prefix, []byte{'\r'})
		c.prefix = c.prefix[:0]
		if len(line) == 0 {
			c.done = true // the empty line ends the header
			break
		}
		if isTrace(line) {
			c.Hops++
		}
	}
	return n, nil
}

// Done reports whether the header has ended: nothing more can count.
func (c *Counter) Done() bool { return c.done }

// Looping reports whether the message has Max trace lines or more.
func (c *Counter) Looping() bool { return c.Hops >= Max }

func isTrace(line []byte) bool {
	return hasPrefixFold(line, "received:") || hasPrefixFold(line, "delivered-to:")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
