package scan

import (
	"io"
	"os"
)

// memSpoolMax is the largest message a proxy session keeps in memory; a
// larger one goes to an unlinked file. Most mail is far smaller, and a
// message read from memory by clamd, spamd, the MIME walk and the relay
// costs no system call: from a file, each of them read it again (five
// preads a message) after a truncate, a seek and the writes that stored
// it. The bound keeps a proxy's memory to a quarter MiB a session.
const memSpoolMax = 256 << 10

// sessionSpool is a proxy session's spool, the message under way in
// stored form: in a buffer kept from one message of the session to the
// next while it fits memSpoolMax, else in an unlinked file in dir made
// for that message. The message is held only while its client waits for
// the answer to its DATA, so memory loses nothing that was accepted.
// Write takes every byte and remembers the first error, which DataEnd
// answers: the server core's sink must not stop mid-message.
type sessionSpool struct {
	dir string
	buf []byte
	f   *os.File // the message's file once it outgrew buf, else nil
	n   int64    // bytes written, the fields the policy put on top included
	err error
}

// reset empties the spool for the session's next message. A file made
// for a large message is dropped: a later one makes its own.
func (s *sessionSpool) reset() {
	s.close()
	s.buf, s.n, s.err = s.buf[:0], 0, nil
}

func (s *sessionSpool) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func (s *sessionSpool) Write(p []byte) (int, error) {
	if s.err != nil {
		return len(p), nil
	}
	if s.f == nil && s.n+int64(len(p)) <= memSpoolMax {
		s.buf = append(s.buf, p...)
		s.n += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		if s.f, _, s.err = spool(s.dir, nil); s.err != nil {
			return len(p), nil
		}
		if _, s.err = s.f.Write(s.buf); s.err != nil {
			return len(p), nil
		}
		s.buf = s.buf[:0]
	}
	_, s.err = s.f.Write(p)
	s.n += int64(len(p))
	return len(p), nil
}

// ReadAt reads the message as stored, from memory or its file.
func (s *sessionSpool) ReadAt(p []byte, off int64) (int, error) {
	if s.f != nil {
		return s.f.ReadAt(p, off)
	}
	if off < 0 {
		return 0, os.ErrInvalid
	}
	if off >= int64(len(s.buf)) {
		return 0, io.EOF
	}
	n := copy(p, s.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
