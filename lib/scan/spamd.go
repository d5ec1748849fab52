package scan

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Spamd is a SpamAssassin spamd reached over TCP or a unix socket, asked
// with SYMBOLS (SPAMC/1.5): score, threshold and the rules that hit.
type Spamd struct {
	Addr    string
	Timeout time.Duration
	// MaxSize is the largest message sent; larger ones are not checked,
	// as spamc passes them (its -s, 500 KB by default).
	MaxSize int64
	User    string // spamd's User header; empty sends none
}

// SpamResult is spamd's answer about one message.
type SpamResult struct {
	Spam      bool
	Score     float64
	Threshold float64
	Symbols   []string
}

// maxSpamdReply bounds spamd's reply: headers plus the symbol list.
const maxSpamdReply = 64 << 10

// Check sends size bytes of r to spamd. Unreachable, slow or failing spamd
// is an error, never ham (spamc's fail-open is a policy, not a default).
func (s *Spamd) Check(ctx context.Context, r io.Reader, size int64) (SpamResult, error) {
	if s.MaxSize > 0 && size > s.MaxSize {
		return SpamResult{}, ErrTooBig
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	conn, err := dial(ctx, s.Addr)
	if err != nil {
		return SpamResult{}, fmt.Errorf("spamd %s: %w", s.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	w := bufio.NewWriterSize(conn, bufferFor(size+256))
	fmt.Fprintf(w, "SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n", size)
	if s.User != "" {
		fmt.Fprintf(w, "User: %s\r\n", s.User)
	}
	w.WriteString("\r\n")
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("message is %d bytes, not %d", n, size)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return SpamResult{}, fmt.Errorf("spamd %s: sending: %w", s.Addr, err)
	}
	res, err := ReadSpamdReply(bufio.NewReader(io.LimitReader(conn, maxSpamdReply)))
	if err != nil {
		return res, fmt.Errorf("spamd %s: %w", s.Addr, err)
	}
	return res, nil
}

// ReadSpamdReply reads spamd's response to SYMBOLS or CHECK:
//
//	SPAMD/1.1 0 EX_OK
//	Content-length: 68
//	Spam: True ; 1003.3 / 5.0
//
//	GTUBE,MISSING_DATE,...
func ReadSpamdReply(br *bufio.Reader) (SpamResult, error) {
	var res SpamResult
	status, err := br.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("reading the reply: %w", err)
	}
	f := strings.Fields(status)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SPAMD/") {
		return res, fmt.Errorf("unexpected reply %q", truncate(strings.TrimSpace(status), 200))
	}
	if f[1] != "0" {
		return res, fmt.Errorf("spamd error: %s", truncate(strings.TrimSpace(status), 200))
	}
	length, sawSpam := int64(-1), false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return res, fmt.Errorf("reading the reply headers: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			length, err = strconv.ParseInt(value, 10, 64)
			if err != nil || length < 0 {
				return res, fmt.Errorf("bad Content-length %q", value)
			}
		case "spam":
			if res, err = ParseSpamHeader(value); err != nil {
				return res, err
			}
			sawSpam = true
		}
	}
	if !sawSpam {
		return res, fmt.Errorf("reply has no Spam header")
	}
	var body []byte
	if length >= 0 {
		body = make([]byte, min(length, maxSpamdReply))
		if _, err := io.ReadFull(br, body); err != nil {
			return res, fmt.Errorf("reading the symbols: %w", err)
		}
	} else {
		body, _ = io.ReadAll(br)
	}
	for _, s := range strings.Split(strings.TrimSpace(string(body)), ",") {
		if s = strings.TrimSpace(s); s != "" {
			res.Symbols = append(res.Symbols, s)
		}
	}
	return res, nil
}

// ParseSpamHeader parses the value of spamd's Spam header,
// "True ; 1003.3 / 5.0" (True/Yes are spam, False/No are not).
func ParseSpamHeader(v string) (SpamResult, error) {
	var res SpamResult
	flag, nums, ok := strings.Cut(v, ";")
	score, thr, ok2 := strings.Cut(nums, "/")
	if !ok || !ok2 {
		return res, fmt.Errorf("bad Spam header %q", truncate(v, 100))
	}
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "true", "yes":
		res.Spam = true
	case "false", "no":
	default:
		return res, fmt.Errorf("bad Spam header %q", truncate(v, 100))
	}
	var err1, err2 error
	res.Score, err1 = strconv.ParseFloat(strings.TrimSpace(score), 64)
	res.Threshold, err2 = strconv.ParseFloat(strings.TrimSpace(thr), 64)
	if err1 != nil || err2 != nil {
		return res, fmt.Errorf("bad Spam header %q", truncate(v, 100))
	}
	return res, nil
}
