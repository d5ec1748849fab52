// Package dotstuff writes a stored message (LF line ends) in the wire
// form of SMTP's DATA: gw-send's transport and gw-scan's proxy send
// their messages through it.
package dotstuff

import (
	"bytes"
	"io"
)

// Writer writes a stored message in DATA's wire form: every line end
// CRLF (a stored CRLF or LF alike), a lone CR sent as a space (Postfix's
// choice: a receiver that took it for a line break could be made to see
// an end of data — SMTP smuggling), and a line that begins with '.' given
// another. So no lone CR or LF reaches the wire, and no "\r\n.\r\n" before
// the end the caller writes.
//
// It works a line at a time (IndexByte finds the line ends), not a byte at
// a time as net/textproto's DotWriter does, and writes to w in blocks of
// FlushAt bytes: a 100 KiB message costs two writes, not twenty-five.
//
// The last line end of what it was given is held back, not written: the
// caller ends the data with it, after Close (that is how gw-send's bytes
// join go-smtp's DotWriter, which writes the end of data), or End writes
// it and the final dot with the last block.
type Writer struct {
	w      io.Writer
	buf    []byte
	cr     bool // the previous byte was a CR not yet decided on
	held   bool // a line end is held back
	inLine bool // bytes of the current line were written
	err    error
}

// FlushAt is the block size written to the connection; BufSize
// is the buffer's, room for a block and what one line adds past it.
const (
	FlushAt = 64 << 10
	BufSize = FlushAt + FlushAt/2
)

// NewWriter writes to w through a buffer of its own.
func NewWriter(w io.Writer) *Writer {
	return NewWriterBuf(w, make([]byte, 0, BufSize))
}

// NewWriterBuf writes to w through buf, of capacity BufSize, which a
// caller keeps from one message to the next.
func NewWriterBuf(w io.Writer, buf []byte) *Writer {
	return &Writer{w: w, buf: buf[:0]}
}

func (d *Writer) Write(p []byte) (int, error) {
	n := len(p)
	// Stored messages have LF line ends and seldom a CR: one search for a
	// CR over all of p, and one a line for its LF.
	cr := bytes.IndexByte(p, '\r')
	for len(p) > 0 && d.err == nil {
		if d.cr { // a CR ended the previous write
			d.cr = false
			if p[0] == '\n' {
				d.lineEnd()
				p, cr = p[1:], cr-1
			} else {
				d.text(space)
			}
			continue
		}
		end := bytes.IndexByte(p, '\n')
		if end < 0 {
			end = len(p)
		}
		if cr >= 0 && cr < end {
			d.text(p[:cr])
			switch {
			case cr+1 == len(p):
				d.cr = true // decided by the next write, or by Close
				p = nil
			case p[cr+1] == '\n':
				d.lineEnd()
				p = p[cr+2:]
			default:
				d.text(space) // a lone CR
				p = p[cr+1:]
			}
			cr = bytes.IndexByte(p, '\r')
			continue
		}
		d.text(p[:end])
		if end == len(p) {
			break
		}
		d.lineEnd()
		p = p[end+1:]
		if cr >= 0 {
			cr -= end + 1
		}
	}
	if d.err != nil {
		return 0, d.err
	}
	return n, nil
}

var space = []byte{' '}

// text adds bytes of a line without line ends.
func (d *Writer) text(s []byte) {
	if len(s) == 0 {
		return
	}
	if d.held {
		d.held = false
		d.buf = append(d.buf, '\r', '\n')
	}
	if !d.inLine && s[0] == '.' {
		d.buf = append(d.buf, '.')
	}
	d.inLine = true
	for len(s) > 0 {
		room := max(cap(d.buf)-len(d.buf), 1)
		k := min(room, len(s))
		d.buf = append(d.buf, s[:k]...)
		s = s[k:]
		if len(d.buf) >= FlushAt {
			d.flush()
		}
	}
}

// lineEnd ends the current line: the line end held back before it goes
// out, this one is held back in turn.
func (d *Writer) lineEnd() {
	if d.held {
		d.buf = append(d.buf, '\r', '\n')
		if len(d.buf) >= FlushAt {
			d.flush()
		}
	}
	d.held = true
	d.inLine = false
}

func (d *Writer) flush() {
	if len(d.buf) > 0 && d.err == nil {
		_, d.err = d.w.Write(d.buf)
	}
	d.buf = d.buf[:0]
}

// Close writes what is buffered (a CR that ended the message as a space),
// but not the held line end: the caller ends the data with one line end,
// whether the message ended in one or not. It does not close w.
func (d *Writer) Close() error {
	if d.cr {
		d.cr = false
		d.text(space)
	}
	d.flush()
	return d.err
}

// End is Close followed by the end of data: the line end held back (or
// the one owed, when the message did not end in one) and the final dot,
// in the same write as the last block.
func (d *Writer) End() error {
	if d.cr {
		d.cr = false
		d.text(space)
	}
	d.held = false
	d.buf = append(d.buf, "\r\n.\r\n"...)
	d.flush()
	return d.err
}
