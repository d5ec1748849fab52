package deliver

import "io"

// lineEnds is what gw puts in front of go-smtp's DATA writer (net/textproto's
// DotWriter, which turns LF into CRLF and dot-stuffs, but passes a lone CR
// through — see specs/go-smtp.md). It hands the writer LF line ends only:
// a stored CRLF or LF becomes LF, and a lone CR becomes a space (Postfix's
// choice: a receiver that took it for a line break could be made to see an
// end of data — SMTP smuggling). So every line on the wire ends in CRLF,
// no lone CR or LF reaches it, and a line that begins with '.' gets
// another. Close passes on a CR held back at the end; it does not close w.
type lineEnds struct {
	w   io.Writer
	cr  bool // the previous byte was a CR not yet written
	buf []byte
}

func (l *lineEnds) Write(p []byte) (int, error) {
	out := l.buf[:0]
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c == '\n' {
				out = append(out, '\n')
				continue
			}
			out = append(out, ' ')
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		out = append(out, c)
	}
	l.buf = out
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes the space for a CR that ended the message.
func (l *lineEnds) Close() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write([]byte{' '})
	return err
}
