package scan

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Forged reports whether an incoming header field is one gw-scan writes
// and outsiders could forge to pass as scanned or clean: X-Spam-*,
// X-Virus-*, X-GW-Alert and X-GW-Scanned. Rewrite removes them; a trusted
// message (a valid X-GW-Scanned) keeps them, since its scanner wrote them.
func Forged(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "x-spam-") || strings.HasPrefix(n, "x-virus-") ||
		n == "x-gw-alert" || n == "x-gw-scanned"
}

// walkHeader reads the header of the stored message in br and passes its
// raw bytes to out, chunk by chunk, with the lowercase name of the field
// each chunk belongs to ("" for the blank line that ends the header). It
// returns at the body. A line that is neither a field nor a continuation
// ends the header too: it is body, left unread in br. Fields may be of any
// length: nothing is held whole.
func walkHeader(br *bufio.Reader, out func(name string, chunk []byte) error) error {
	name := ""
	for {
		b, err := br.Peek(1)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch {
		case b[0] == '\n':
			br.Discard(1)
			return out("", []byte("\n"))
		case b[0] == '\r':
			if p, _ := br.Peek(2); len(p) == 2 && p[1] == '\n' {
				br.Discard(2)
				return out("", []byte("\r\n"))
			}
			return nil
		case b[0] == ' ' || b[0] == '\t':
			if name == "" {
				return nil // a continuation with no field: body
			}
		default:
			n, ok := fieldName(br)
			if !ok {
				return nil
			}
			name = n
		}
		// Copy the line to its LF, in buffer-sized chunks.
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				if err := out(name, line); err != nil {
					return err
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			break
		}
	}
}

// fieldName peeks at the start of a line for "name:" and returns the name
// in lower case. Names are printable ASCII without ':' (RFC 5322 2.2).
func fieldName(br *bufio.Reader) (string, bool) {
	p, _ := br.Peek(min(br.Size(), 256))
	i := bytes.IndexByte(p, ':')
	if i <= 0 {
		return "", false
	}
	for _, c := range p[:i] {
		if c <= ' ' || c > '~' {
			return "", false
		}
	}
	return strings.ToLower(string(p[:i])), true
}

// Rewrite copies the stored message in r to w: the lines in add first,
// then r's header without Forged fields, then the rest byte for byte.
func Rewrite(w io.Writer, r io.Reader, add []string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, l := range add {
		bw.WriteString(l)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	err := walkHeader(br, func(name string, chunk []byte) error {
		if name != "" && Forged(name) {
			return nil
		}
		_, err := bw.Write(chunk)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := io.Copy(bw, br); err != nil {
		return err
	}
	return bw.Flush()
}
