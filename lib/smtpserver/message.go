package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// data answers DATA: the policy's sink gets the message in stored form,
// read by the strict reader (readData), and the policy's DataEnd has the
// last word.
func (c *conn) data(arg string) {
	if arg != "" {
		c.refuse(ErrNoArgs, "syntax")
		return
	}
	sink, r := c.pol.Data(c.s)
	if r != nil {
		c.reply(r)
		return
	}
	c.line("354 go ahead, end with <CRLF>.<CRLF>")
	m := &Message{}
	cnt := &counter{w: sink, limit: c.cfg.MaxMessage, m: m}
	c.feed.dataDeadline()
	err := readData(c.br, cnt)
	switch {
	case errors.Is(err, errBareLF) || errors.Is(err, errBareCR):
		// What follows is neither message nor commands (a server that
		// reads it as commands can be made to run smuggled ones): the
		// session ends after the reply.
		m.Refused, m.Reason = ErrBareLine, err.Error()
		c.stop("bare_line_end")
	case err != nil:
		c.dataReadFailed(m, err)
	}
	c.endMessage(m, cnt)
}

// dataReadFailed refuses a message whose bytes stopped coming.
func (c *conn) dataReadFailed(m *Message, err error) {
	switch {
	case isTimeout(err):
		m.Refused, m.Reason = ErrTimeout, "timeout"
		c.stop("timeout")
	default:
		m.Refused, m.Reason = ErrLocal, "disconnect"
		c.stop("disconnect")
	}
}

// endMessage asks the policy's DataEnd and answers the message.
func (c *conn) endMessage(m *Message, cnt *counter) {
	m.Size = cnt.n
	if m.Refused == nil && cnt.over {
		m.Refused, m.Reason = ErrTooBig, "databytes"
	}
	r := c.pol.DataEnd(c.s, m)
	switch {
	case m.Refused != nil:
		c.fromPol = true
		c.reply(m.Refused)
	case r != nil && r.Code >= 300:
		c.fromPol = true
		c.reply(r)
	default:
		c.s.Msgs++
		c.junk = 0
		if r == nil {
			r = R(250, "2.0.0", "ok")
		}
		c.send(r)
	}
	c.msg, c.sink = nil, nil
	c.reset()
}

// bdat answers BDAT (RFC 3030). Every chunk's bytes are read, whatever
// the answer: a refused chunk is read and dropped, never parsed as
// commands. Chunks pass the limits DATA does, and the last one ends the
// message through the same DataEnd.
func (c *conn) bdat(arg string) {
	f := strings.Fields(arg)
	size, err := strconv.ParseInt(firstOr(f), 10, 64)
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	if err != nil || size < 0 || len(f) == 0 || len(f) > 2 || len(f) == 2 && !last {
		// Without its size the chunk cannot be told from commands.
		c.refuse(ErrBadChunk, "bdat_syntax")
		c.stop("bdat_syntax")
		return
	}
	if c.st&(stRcpt|stChunks) == 0 {
		c.skipChunk(size, c.sequence(verbs["BDAT"]), "out_of_sequence")
		return
	}
	if c.msg == nil {
		sink, r := c.pol.Data(c.s)
		if r != nil {
			c.skipChunk(size, r, "")
			return
		}
		c.msg = &Message{Chunked: true}
		c.sink = &counter{w: sink, limit: c.cfg.MaxMessage, m: c.msg, raw: &dataReader{raw: true}}
		c.st = stChunks
	}
	m, cnt := c.msg, c.sink
	if cnt.limit > 0 && cnt.n+size > cnt.limit {
		// Refused at once: the rest of the message would go nowhere.
		m.Refused, m.Reason = ErrTooBig, "databytes"
		c.fromPol = true
		c.discard(size)
		if c.reason == "" {
			c.endMessage(m, cnt)
		}
		return
	}
	c.feed.dataDeadline()
	bad, err := readChunk(c.br, cnt.raw, cnt, size)
	switch {
	case err != nil:
		c.dataReadFailed(m, err)
		c.endMessage(m, cnt)
		return
	case bad == nil && last && cnt.raw.state == stCR:
		bad = errBareCR // a CR the message ended with
	}
	if bad != nil {
		m.Refused, m.Reason = ErrBareLine, bad.Error()
		c.endMessage(m, cnt)
		return
	}
	if last {
		c.endMessage(m, cnt)
		return
	}
	c.line("250 2.0.0 ", strconv.FormatInt(size, 10), " octets received")
}

func firstOr(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// skipChunk reads a refused chunk's bytes and drops them.
func (c *conn) skipChunk(size int64, r *Reply, reason string) {
	c.feed.dataDeadline()
	c.discard(size)
	if c.reason != "" {
		return
	}
	if reason != "" {
		c.refuse(r, reason, "bytes", size)
	} else {
		c.reply(r)
	}
}

// discard reads n bytes and drops them.
func (c *conn) discard(n int64) {
	c.feed.dataDeadline()
	for n > 0 {
		k, err := c.br.Discard(int(min(n, readBuffer)))
		n -= int64(k)
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}

// readChunk passes n bytes of a BDAT chunk through d (line ends to LF,
// the same bare CR and LF policy as DATA, no dot handling) to w. After a
// bare line end it reads on to the chunk's end and reports it.
func readChunk(br *bufio.Reader, d *dataReader, w io.Writer, n int64) (bad, err error) {
	d.w = w
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return bad, err
			}
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		if bad != nil {
			br.Discard(len(b))
			n -= int64(len(b))
			continue
		}
		k, _, e := d.scan(b)
		br.Discard(k)
		n -= int64(k)
		bad = e
	}
	return bad, nil
}

// counter passes the message to the policy's sink, counting its size
// (databytes counts the stored form, as qmail does) and keeping its
// header section for DataEnd. Past limit nothing more is passed: the
// rest is read, to answer, and goes nowhere.
type counter struct { // w nil: the message goes nowhere
	w      io.Writer
	limit  int64
	n      int64
	over   bool
	m      *Message
	prevLF bool
	raw    *dataReader // BDAT: the line-end state kept between chunks
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.limit > 0 && c.n > c.limit {
		c.over = true
	}
	if !c.over && c.w != nil {
		c.w.Write(p)
	}
	if !c.m.complete && len(c.m.Header) < MaxHeader {
		c.header(p)
	}
	return len(p), nil
}

// header keeps p up to the blank line that ends the header section.
func (c *counter) header(p []byte) {
	end := -1
	if c.prevLF && len(p) > 0 && p[0] == '\n' || len(c.m.Header) == 0 && len(p) > 0 && p[0] == '\n' {
		end = 1
	} else if i := bytes.Index(p, []byte("\n\n")); i >= 0 {
		end = i + 2
	}
	if end >= 0 {
		p, c.m.complete = p[:end], true
	}
	if room := MaxHeader - len(c.m.Header); len(p) > room {
		p = p[:room]
	}
	c.m.Header = append(c.m.Header, p...)
	if len(p) > 0 {
		c.prevLF = p[len(p)-1] == '\n'
	}
}
