package scan

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Forged reports whether an incoming header field is one gw-scan writes
// and outsiders could forge to pass as scanned or clean: X-Spam-*,
// X-Virus-*, X-Rspamd-*, X-GW-Alert and X-GW-Scanned. Rewrite removes them; a trusted
// message (a valid X-GW-Scanned) keeps them, since its scanner wrote them.
func Forged(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "x-spam-") || strings.HasPrefix(n, "x-virus-") || strings.HasPrefix(n, "x-rspamd-") ||
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
	return rewrite(w, r, add, nil, nil, 64<<10)
}

// RewriteDrop is Rewrite that also leaves out the fields in drop (a
// lower-case name → 0 for every instance, n for the nth, -n for the nth
// from the end), as rspamd's remove_headers asks. size bytes of r are
// the message; counting from the end reads the header twice.
func RewriteDrop(w io.Writer, r io.ReaderAt, add []string, drop map[string]int, size int64) error {
	var total map[string]int
	for _, i := range drop {
		if i < 0 {
			total = map[string]int{}
			lastLF := true
			err := walkHeader(bufio.NewReaderSize(io.NewSectionReader(r, 0, size), bufferFor(size)), func(name string, chunk []byte) error {
				if lastLF && name != "" && isFieldStart(chunk) {
					total[name]++
				}
				lastLF = chunk[len(chunk)-1] == '\n'
				return nil
			})
			if err != nil {
				return err
			}
			break
		}
	}
	return rewrite(w, io.NewSectionReader(r, 0, size), add, drop, total, bufferFor(size))
}

// bufferFor is the size of a buffer for n bytes: n, between 4 KiB and
// 64 KiB. A message's buffers are garbage when it is done; sized to a
// small message they make the collector run less often.
func bufferFor(n int64) int {
	return int(min(max(n, 4<<10), 64<<10))
}

// isFieldStart tells a field's first chunk from its continuations and
// from the later chunks of a long line: only a first chunk begins with
// the name.
func isFieldStart(chunk []byte) bool {
	return len(chunk) > 0 && chunk[0] != ' ' && chunk[0] != '\t'
}

func rewrite(w io.Writer, r io.Reader, add []string, drop, total map[string]int, bufSize int) error {
	bw := bufio.NewWriterSize(w, bufSize)
	for _, l := range add {
		bw.WriteString(l)
	}
	br := bufio.NewReaderSize(r, bufSize)
	seen := map[string]int{}
	dropping := false
	lastLF := true // whether the previous chunk ended a line
	err := walkHeader(br, func(name string, chunk []byte) error {
		start := lastLF && isFieldStart(chunk) && name != ""
		lastLF = chunk[len(chunk)-1] == '\n'
		if start {
			seen[name]++
			dropping = false
			if i, ok := drop[name]; ok {
				n := seen[name]
				dropping = i == 0 || i == n || (i < 0 && total[name]+1+i == n)
			}
		}
		if name != "" && (Forged(name) || dropping) {
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
