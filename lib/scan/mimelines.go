package scan

import (
	"bytes"
	"io"
	"sync"
)

// maxMIMELine is the longest line the MIME walk holds whole. Longer lines
// come in pieces: a piece is body text, never a header or a boundary, so a
// header line this long is damage (mimeWalk.damaged).
const maxMIMELine = 1 << 20

// lineSource reads a message line by line as Python's email feed parser
// does, the parser the MIME walk is held to: a line ends at LF, CRLF or a
// bare CR. It keeps the stack of "false ends" of the parts being read: a
// line that is a boundary of any enclosing multipart (RFC 2046 5.1.2: an
// outer boundary ends every inner part), or a blank line inside a
// message/delivery-status, ends the current part and stays unread.
type lineSource struct {
	r        io.Reader
	buf      []byte
	start    int
	end      int
	eof      bool
	back     []byte // one line pushed back, owned
	hasBack  bool
	backCut  bool // back is a piece
	midLine  bool // the last line returned was a piece: what follows is its rest
	piece    bool // the line just returned is (part of) an over-long line
	stack    []partEnd
	stackLen int // bytes of boundaries held in stack
}

// partEnd is a line that ends a part: "--boundary" (with or without the
// closing "--"), or, with blank, an empty line.
type partEnd struct {
	sep   []byte
	blank bool
}

// lineBufSize is a line source's buffer as it starts; it grows for a
// longer line, up to maxMIMELine.
const lineBufSize = 64 << 10

// lineBufs keeps line sources' buffers from one message to the next: a
// fresh one a message, zeroed by the allocator and then collected, was
// a few percent of the proxy's CPU on a 10 KiB message.
var lineBufs = sync.Pool{New: func() any { return new([lineBufSize]byte) }}

func newLineSource(r io.Reader) *lineSource {
	return &lineSource{r: r, buf: lineBufs.Get().(*[lineBufSize]byte)[:]}
}

// release gives the buffer back for another message; s is not used
// again. A buffer grown for a long line is left to the collector.
func (s *lineSource) release() {
	if len(s.buf) == lineBufSize {
		lineBufs.Put((*[lineBufSize]byte)(s.buf))
	}
	s.buf = nil
}

// raw returns the next line with its terminator, or a piece of an
// over-long line; nil at the end of input. The slice is valid until the
// next call.
func (s *lineSource) raw() []byte {
	s.piece = s.midLine
	for {
		data := s.buf[s.start:s.end]
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			n := i + 1
			if data[i] == '\r' {
				if i+1 == len(data) && !s.eof {
					s.fill() // is the CR's LF still to come?
					continue
				}
				if i+1 < len(data) && data[i+1] == '\n' {
					n++
				}
			}
			s.start += n
			s.midLine = false
			return data[:n]
		}
		if s.eof {
			if len(data) == 0 {
				return nil
			}
			s.start = s.end
			s.midLine = false
			return data
		}
		if len(data) >= maxMIMELine {
			s.start = s.end
			s.midLine, s.piece = true, true
			return data
		}
		s.fill()
	}
}

// fill reads more input, growing the buffer up to maxMIMELine; it returns
// false at the end of input.
func (s *lineSource) fill() bool {
	if s.start > 0 {
		copy(s.buf, s.buf[s.start:s.end])
		s.end -= s.start
		s.start = 0
	}
	if s.end == len(s.buf) {
		nb := make([]byte, min(2*len(s.buf), maxMIMELine+1))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.eof = true
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// next returns the next line of the current part, or false at its end: the
// end of input, or a line that ends an enclosing part (left unread).
func (s *lineSource) next() ([]byte, bool) {
	var l []byte
	if s.hasBack {
		s.hasBack = false
		l = s.back
		s.piece = s.backCut
	} else {
		l = s.raw()
	}
	if l == nil {
		return nil, false
	}
	if !s.piece {
		for i := len(s.stack) - 1; i >= 0; i-- {
			if s.stack[i].ends(l) {
				s.unread(l)
				return nil, false
			}
		}
	}
	return l, true
}

// unread pushes l back: the next call of next returns it again.
func (s *lineSource) unread(l []byte) {
	s.back = append(s.back[:0], l...)
	s.hasBack, s.backCut = true, s.piece
}

func (s *lineSource) push(e partEnd) {
	s.stack = append(s.stack, e)
	s.stackLen += len(e.sep)
}

func (s *lineSource) pop() {
	e := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	s.stackLen -= len(e.sep)
}

func (e partEnd) ends(l []byte) bool {
	if e.blank {
		return isBlankLine(l)
	}
	return delimiter(l, e.sep) != notDelimiter
}

func isBlankLine(l []byte) bool { return len(l) > 0 && (l[0] == '\r' || l[0] == '\n') }

const (
	notDelimiter = iota
	partDelimiter
	closeDelimiter
)

// delimiter tells whether l is sep ("--" and the boundary) alone on its
// line, as a part delimiter or, followed by "--", as the close delimiter:
// blanks may follow, nothing else (RFC 2046 5.1.1).
func delimiter(l, sep []byte) int {
	rest, ok := bytes.CutPrefix(l, sep)
	if !ok {
		return notDelimiter
	}
	kind := partDelimiter
	if r, ok := bytes.CutPrefix(rest, []byte("--")); ok && onlyBlanks(r) {
		return closeDelimiter
	}
	if onlyBlanks(rest) {
		return kind
	}
	return notDelimiter
}

// onlyBlanks: spaces and tabs, then the line's end or nothing.
func onlyBlanks(b []byte) bool {
	b = bytes.TrimLeft(b, " \t")
	switch string(b) {
	case "", "\n", "\r", "\r\n":
		return true
	}
	return false
}
