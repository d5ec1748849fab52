package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DATA's line-ending policy is qmail's, extended to bare CR: the message
// ends only at <CRLF>.<CRLF> (or ".<CRLF>" as its first line); a LF not
// preceded by CR, or a CR followed by anything but CR or LF, ends the
// session with a temporary error, so no smuggled end-of-data variant can
// be read either as data or as a boundary. One exception keeps senders
// working: CRs that directly precede a CRLF ("text<CR><CR><LF>") are data,
// kept as qmail and Postfix keep them, and the line ends at the CRLF;
// not on a line that is a single dot (".<CR><CR><LF>"), which a server that
// folds CR CR LF into CRLF reads as the end: that is refused too. The
// stored form has LF line ends and leading dots unstuffed.
var (
	errBareLF = errors.New("bare LF in DATA")
	errBareCR = errors.New("bare CR in DATA")
)

// Reader states at the position after the last byte consumed.
const (
	stLineStart = iota // after CRLF or at the start
	stDot              // "." at the start of a line
	stDotCR            // ".<CR>" at the start of a line
	stInLine           // inside a line
	stCR               // one or more CRs inside a line (count in crs)
)

// dataReader copies one DATA body from br to w in stored form.
type dataReader struct {
	br    *bufio.Reader
	w     io.Writer
	state int
	crs   int  // CRs pending in stCR
	raw   bool // BDAT: no dot-stuffing, no end marker
}

var crs = []byte("\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r")

// readData reads the body from br up to and including the end marker and
// writes it to w, unstuffed, with LF line ends. It stops at the end marker
// and leaves what follows in br (pipelined commands). Errors are errBareLF,
// errBareCR, or br's read error; w's errors are ignored (w must keep
// accepting: the client's message is read to its end whatever happens).
func readData(br *bufio.Reader, w io.Writer) error {
	d := dataReader{br: br, w: w}
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return err
			}
		}
		b, _ := br.Peek(br.Buffered())
		n, done, err := d.scan(b)
		br.Discard(n)
		if done || err != nil {
			return err
		}
	}
}

// scan consumes b and returns how much it consumed and whether the end
// marker was found. The stored form is never longer than what it comes
// from, so scan compacts it in place over the bytes it consumed (they are
// discarded next, and the bytes after them are left as they were) and
// hands w one span a call: a write a buffer, not two a line, is most of
// what a message costs this reader.
func (d *dataReader) scan(b []byte) (int, bool, error) {
	o := 0
	n, done, err := d.compact(b, &o)
	if o > 0 {
		d.w.Write(b[:o])
	}
	return n, done, err
}

// compact is scan's state machine: it moves the stored form of b to
// b[:*o], which never overtakes the byte being read.
func (d *dataReader) compact(b []byte, o *int) (int, bool, error) {
	start := 0 // beginning of the current span of plain data to keep
	crAt := -1 // where this buffer's run of CRs began, -1: in an earlier one
	keep := func(end int) {
		if end > start {
			*o += copy(b[*o:], b[start:end])
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch d.state {
		case stInLine:
			// Jump to the line's end (the next CR) with a vectorised
			// search, checking that no LF comes before it: most of a
			// message is line contents.
			rest := b[i:]
			j := bytes.IndexByte(rest, '\r')
			if j >= 0 {
				rest = rest[:j]
			}
			if k := bytes.IndexByte(rest, '\n'); k >= 0 {
				keep(i + k)
				return i + k + 1, false, errBareLF
			}
			if j < 0 {
				i = len(b) - 1 // all of b is inside the line
				continue
			}
			i += j
			keep(i)
			start = i + 1
			d.state, d.crs, crAt = stCR, 1, i
		case stLineStart:
			switch {
			case c == '.' && !d.raw:
				d.state = stDot
				start = i + 1
			case c == '\r':
				d.state, d.crs, crAt = stCR, 1, i
				start = i + 1
			case c == '\n':
				return i + 1, false, errBareLF
			default:
				d.state = stInLine
				start = i
			}
		case stDot:
			switch c {
			case '\r':
				d.state = stDotCR
				start = i + 1
			case '\n':
				return i + 1, false, errBareLF
			default: // ".x": the first dot is dropped (RFC 5321 4.5.2)
				d.state = stInLine
				start = i
			}
		case stDotCR:
			if c == '\n' {
				return i + 1, true, nil
			}
			return i + 1, false, errBareCR
		case stCR:
			switch c {
			case '\r':
				d.crs++
				start = i + 1
			case '\n':
				// The CRs before the last one are data. Those read in
				// this buffer are still in it; a run begun in an
				// earlier buffer (rare) is written from crs after what
				// is kept so far.
				if crAt >= 0 {
					start = crAt
					keep(i - 1)
				} else {
					d.w.Write(b[:*o])
					*o = 0
					for k := d.crs - 1; k > 0; k -= len(crs) {
						d.w.Write(crs[:min(k, len(crs))])
					}
				}
				b[*o] = '\n'
				*o++
				d.state = stLineStart
				start = i + 1
			default:
				return i + 1, false, errBareCR
			}
		}
	}
	if d.state == stInLine {
		keep(len(b))
	}
	return len(b), false, nil
}
