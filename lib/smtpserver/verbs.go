package smtpserver

import (
	"bufio"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"gw/lib/mailbox"
)

// verb is one row of the command table: the states it is allowed in,
// whether it is junk (a command that moves no mail, counted against
// MaxJunk), and what it does.
type verb struct {
	name   string
	states state
	junk   bool
	run    func(c *conn, arg string)
}

// verbs is the command table. A verb outside it is 502; a verb in a
// state it does not list is 503 (sequence).
var verbs = map[string]*verb{}

func init() {
	for _, v := range []*verb{
		{"HELO", stAny, false, (*conn).helo},
		{"EHLO", stAny, false, (*conn).ehlo},
		{"MAIL", stReady, false, (*conn).mail},
		{"RCPT", stMail | stRcpt, false, (*conn).rcpt},
		{"DATA", stRcpt, false, (*conn).data},
		{"BDAT", stAny, false, (*conn).bdat}, // its state is checked after its bytes are read
		{"RSET", stAny, true, (*conn).rset},
		{"NOOP", stAny, true, (*conn).noop},
		{"VRFY", stAny, true, (*conn).vrfy},
		{"HELP", stAny, true, (*conn).help},
		{"QUIT", stAny, false, (*conn).quit},
		{"STARTTLS", stGreeted | stReady, false, (*conn).starttls},
		{"AUTH", stReady, false, (*conn).auth},
	} {
		verbs[v.name] = v
	}
}

func (c *conn) helo(arg string) { c.hello(arg, false) }
func (c *conn) ehlo(arg string) { c.hello(arg, true) }

// hello answers HELO and EHLO: the transaction is reset (RFC 5321
// 4.1.4), the policy told the name.
func (c *conn) hello(arg string, ehlo bool) {
	if arg == "" {
		c.refuse(ErrArgRequired, "helo_without_name")
		return
	}
	c.reset()
	c.s.Helo, c.s.EHLO = arg, ehlo
	if r := c.pol.Helo(c.s); r != nil {
		c.s.Helo, c.s.EHLO = "", false
		c.reply(r)
		return
	}
	c.st = stReady
	if !ehlo {
		c.line("250 2.0.0 " + c.cfg.Hostname)
		return
	}
	ext := []string{c.cfg.Hostname, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"}
	if c.cfg.TLS != nil && c.s.TLS == nil {
		ext = append(ext, "STARTTLS")
	}
	if c.s.TLS != nil {
		ext = append(ext, "REQUIRETLS") // RFC 8689 4.1: on TLS sessions only
	}
	if c.cfg.Auth && c.s.TLS != nil {
		ext = append(ext, "AUTH PLAIN LOGIN")
	}
	ext = append(ext, c.cfg.Keywords...)
	size := "SIZE"
	if c.cfg.MaxMessage > 0 {
		size += " " + strconv.FormatInt(c.cfg.MaxMessage, 10)
	}
	for _, e := range ext {
		c.line("250-" + e)
	}
	c.line("250 " + size)
}

// path splits MAIL's or RCPT's argument after prefix into the path and
// its parameters.
func (c *conn) path(arg, prefix string) (string, string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		c.refuse(ErrSyntax, "syntax")
		return "", "", false
	}
	path, params, err := mailbox.ParsePath(arg[len(prefix):])
	if err != nil {
		c.refuse(ErrBadPath, "path_syntax", "err", err)
		return "", "", false
	}
	return path, params, true
}

func (c *conn) mail(arg string) {
	path, params, ok := c.path(arg, "FROM:")
	if !ok {
		return
	}
	m := &Mail{Path: path}
	if r, why := mailParams.apply(c, m, params); r != nil {
		c.refuse(r, why)
		return
	}
	if r := c.pol.Mail(c.s, m); r != nil {
		c.reply(r)
		return
	}
	c.s.Mail, c.st = m, stMail
	c.line("250 2.0.0 ok")
}

func (c *conn) rcpt(arg string) {
	path, params, ok := c.path(arg, "TO:")
	if !ok {
		return
	}
	r := &Rcpt{Path: path}
	if rep, why := rcptParams.apply(c, r, params); rep != nil {
		c.refuse(rep, why)
		return
	}
	if m := c.cfg.MaxRcpt; m > 0 && len(c.s.Rcpts) >= m {
		c.refuse(ErrTooManyRcpt, "maxrcpt", "to", path)
		return
	}
	if rep := c.pol.Rcpt(c.s, r); rep != nil {
		c.fromPol = true
		c.reply(rep)
		return
	}
	c.s.Rcpts, c.st = append(c.s.Rcpts, r), stRcpt
	c.line("250 2.0.0 ok")
}

func (c *conn) rset(arg string) {
	c.reset()
	c.line("250 2.0.0 ok")
}

func (c *conn) noop(string) { c.line("250 2.0.0 ok") }

func (c *conn) vrfy(string) {
	c.line("252 2.5.0 cannot verify the user, but will accept mail and attempt delivery")
}

func (c *conn) help(string) {
	c.line("214 2.0.0 commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS AUTH")
}

func (c *conn) quit(string) {
	c.line("221 2.0.0 " + c.cfg.Hostname + " closing connection")
	c.stop("quit")
}

// starttls answers STARTTLS and starts TLS on the same loop. Whatever the
// client sent after it in plaintext is dropped unread (the
// CVE-2011-0411 class), and all the session learned before is forgotten
// (RFC 3207 4.2): the client says EHLO again.
func (c *conn) starttls(arg string) {
	switch {
	case arg != "":
		c.refuse(ErrNoArgs, "syntax")
		return
	case c.cfg.TLS == nil || c.s.TLS != nil:
		c.refuse(ErrUnimplemented, "no_tls")
		return
	}
	c.line("220 2.0.0 ready to start TLS")
	c.flush()
	if n := c.br.Buffered(); n > 0 {
		c.log("warning", "refused", "cmd", "STARTTLS", "reason", "pipelined_after_starttls", "bytes", n)
	}
	c.reset()
	c.s.Helo, c.s.EHLO, c.st = "", false, stGreeted
	if c.reason == "" {
		c.handshake()
	}
}

// auth runs an SMTP AUTH exchange (RFC 4954) with the policy's SASL
// server: 334 challenges in base64, "*" cancels.
func (c *conn) auth(arg string) {
	mech, initial, hasInitial := strings.Cut(arg, " ")
	switch {
	case !c.cfg.Auth:
		c.refuse(ErrUnimplemented, "no_auth")
		return
	case c.s.TLS == nil:
		c.refuse(ErrTLSFirst, "auth_without_tls")
		return
	case c.s.AuthUser != "":
		c.refuse(ErrAuthDone, "auth_again")
		return
	case mech == "":
		c.refuse(ErrArgRequired, "syntax")
		return
	}
	srv, r := c.pol.Auth(c.s, strings.ToUpper(mech))
	if r != nil {
		c.reply(r)
		return
	}
	var resp []byte
	if hasInitial {
		if initial != "=" { // RFC 4954 4: "=" is an empty initial response
			b, err := base64.StdEncoding.DecodeString(initial)
			if err != nil {
				c.refuse(ErrAuthSyntax, "auth_base64")
				return
			}
			resp = b
		} else {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) {
				r = ErrAuthFailed
			}
			c.fromPol = true
			c.reply(r)
			return
		}
		if done {
			c.line("235 2.7.0 authentication successful")
			return
		}
		c.line("334 " + base64.StdEncoding.EncodeToString(challenge))
		c.feed.lineDeadline()
		line, err := c.readLine()
		switch {
		case errors.Is(err, errLineLimit):
			c.refuse(ErrLineLimit, "line_limit")
			return
		case errors.Is(err, errLongLine), errors.Is(err, errBadLine):
			c.refuse(ErrAuthSyntax, "auth_syntax")
			return
		case err != nil:
			c.readFailed(err)
			return
		case line == "*":
			c.refuse(ErrAuthCancelled, "auth_cancelled")
			return
		}
		if resp, err = base64.StdEncoding.DecodeString(line); err != nil {
			c.refuse(ErrAuthSyntax, "auth_base64")
			return
		}
	}
}

var (
	errLongLine  = errors.New("line too long")
	errLineLimit = errors.New("line over the limit")
	errBadLine   = errors.New("CR or NUL inside a command line")
)

// readLine reads one command line. It ends at LF; one CR before the LF is
// removed (qmail accepts commands that end in a bare LF, and so does gw).
// A CR or NUL anywhere else makes the line a syntax error, so no byte a
// client hides in a command reaches a header or a decision. A line over
// MaxLine is errLongLine, read to its end; one that goes on past
// LineLimit is errLineLimit, and the session ends: what would follow is
// no command.
func (c *conn) readLine() (string, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > c.cfg.MaxLine {
		n := len(line)
		for err == bufio.ErrBufferFull {
			if n > c.cfg.LineLimit {
				return "", errLineLimit
			}
			line, err = c.br.ReadSlice('\n')
			n += len(line)
		}
		switch {
		case err != nil:
			return "", err
		case n > c.cfg.LineLimit:
			return "", errLineLimit
		}
		return "", errLongLine
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	for _, b := range line {
		if b == '\r' || b == 0 {
			return "", errBadLine
		}
	}
	return string(line), nil
}
