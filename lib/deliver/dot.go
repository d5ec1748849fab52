package deliver

import "bufio"

// dotWriter turns a stored message into DATA's wire form: every line ends
// in CRLF (a stored LF or CRLF becomes CRLF), a lone CR becomes a space
// (Postfix's choice: a receiver that took it for a line break could be
// made to see an end of data — SMTP smuggling), a line that begins with
// '.' gets another, and Close ends the data with CRLF "." CRLF.
type dotWriter struct {
	w         *bufio.Writer
	lineStart bool
	cr        bool // the previous byte was a CR not yet written
}

func newDotWriter(w *bufio.Writer) *dotWriter { return &dotWriter{w: w, lineStart: true} }

func (d *dotWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if d.cr {
			d.cr = false
			if c == '\n' {
				d.w.WriteString("\r\n")
				d.lineStart = true
				continue
			}
			d.put(' ')
		}
		switch c {
		case '\r':
			d.cr = true
		case '\n':
			d.w.WriteString("\r\n")
			d.lineStart = true
		default:
			d.put(c)
		}
	}
	return len(p), nil
}

func (d *dotWriter) put(c byte) {
	if d.lineStart && c == '.' {
		d.w.WriteByte('.')
	}
	d.lineStart = false
	d.w.WriteByte(c)
}

// Close ends the data; it flushes and returns the write error if any.
func (d *dotWriter) Close() error {
	if d.cr {
		d.cr = false
		d.put(' ')
	}
	if !d.lineStart {
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}
