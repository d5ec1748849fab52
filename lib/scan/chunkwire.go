package scan

import "bytes"

// chunkWire renders a stored message (LF line ends) in the wire form a
// BDAT chunk carries (RFC 3030): every line end CRLF, a lone CR sent as
// a space, as lib/dotstuff does for DATA, and no dot-stuffing, for a
// chunk has no end marker. The message ends with a line end, as DATA's
// ends before its dot: the same bytes reach the next hop either way.
type chunkWire struct {
	b  []byte
	cr bool // the previous write ended in a CR not yet decided on
}

func (w *chunkWire) reset() { w.b, w.cr = w.b[:0], false }

func (w *chunkWire) Write(p []byte) (int, error) {
	n := len(p)
	if w.cr && len(p) > 0 {
		w.cr = false
		if p[0] == '\n' {
			w.b = append(w.b, '\r', '\n')
			p = p[1:]
		} else {
			w.b = append(w.b, ' ')
		}
	}
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			w.b = append(w.b, p...)
			break
		}
		w.b = append(w.b, p[:i]...)
		switch {
		case p[i] == '\n':
			w.b = append(w.b, '\r', '\n')
			p = p[i+1:]
		case i+1 == len(p):
			w.cr = true // decided by the next write, or by end
			p = nil
		case p[i+1] == '\n':
			w.b = append(w.b, '\r', '\n')
			p = p[i+2:]
		default:
			w.b = append(w.b, ' ') // a lone CR
			p = p[i+1:]
		}
	}
	return n, nil
}

// end completes the message: a CR it ended with is a space, and a last
// line without its line end gets one.
func (w *chunkWire) end() []byte {
	if w.cr {
		w.cr = false
		w.b = append(w.b, ' ')
	}
	if !bytes.HasSuffix(w.b, []byte("\r\n")) {
		w.b = append(w.b, '\r', '\n')
	}
	return w.b
}
