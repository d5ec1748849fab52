package scan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"
)

// The MIME walk follows a message's structure the way Python's email
// package (email.message_from_bytes, policy default) does, because that
// parser gives up on nothing: a damaged header ends the header and the
// rest is body, an outer boundary ends every inner part, a multipart with
// no close delimiter ends at the end of its parent. A filter that stops at
// the first error lets through what a mail reader still shows. Where
// readers may disagree (a boundary cut short, a header too long to hold)
// the walk goes on as Python would and notes the damage; the rules turn
// damage into class badmime, never into a silent pass.

// maxMIMEHeader bounds one part's header block.
const maxMIMEHeader = 1 << 20

// hardMaxDepth bounds the nesting whatever control/mimemaxdepth says.
const hardMaxDepth = 1000

// maxBoundaries bounds the boundaries held at once (all nesting levels).
const maxBoundaries = 1 << 20

// mimePart is one entity as the walk meets it, parents before children.
type mimePart struct {
	Pos   string   // "1.2"; "" for the message itself
	Type  string   // as Python's email package resolves it
	Names []string // every file name its header may give
	// Body is a leaf's body, its transfer encoding undone; nil for
	// multiparts and attached messages, whose children come next.
	Body io.Reader
	// Text is set for text/* leaves: uuencoded files hide in plain text.
	Text bool
}

// mimeWalk is one walk over one message.
type mimeWalk struct {
	src      *lineSource
	visit    func(*mimePart) *Finding
	maxDepth int
	maxParts int
	parts    int
	damage   *Finding // the first damage seen, as a badmime finding
}

// walkMIME reads the message in r to its end (unless visit or a limit
// stops it with a finding) and calls visit for every part. It returns the
// first finding; with none, the damage seen, if any.
func walkMIME(r io.Reader, maxDepth, maxParts int, visit func(*mimePart) *Finding) *Finding {
	if maxDepth <= 0 || maxDepth > hardMaxDepth {
		maxDepth = hardMaxDepth // each level is a frame on the stack
	}
	w := &mimeWalk{src: newLineSource(r), visit: visit, maxDepth: maxDepth, maxParts: maxParts}
	defer w.src.release() // nothing found keeps a slice of its buffer
	if f := w.entity("", 0, "text/plain"); f != nil {
		return f
	}
	return w.damage
}

func (w *mimeWalk) damaged(pos, why string) {
	if w.damage == nil {
		w.damage = &Finding{Class: ClassBadMIME, Rule: why, Part: pos}
	}
}

// entity walks one part: its header, then its body, its children or the
// message it holds. def is its type when it declares none.
func (w *mimeWalk) entity(pos string, depth int, def string) *Finding {
	w.parts++
	if w.maxParts > 0 && w.parts > w.maxParts {
		return &Finding{Class: ClassBomb, Rule: fmt.Sprintf("parts>%d", w.maxParts), Part: pos}
	}
	if w.maxDepth > 0 && depth > w.maxDepth {
		return &Finding{Class: ClassBomb, Rule: fmt.Sprintf("depth>%d", w.maxDepth), Part: pos}
	}
	h := w.header(pos)
	ctype := h.contentType(def)
	p := &mimePart{Pos: pos, Type: ctype, Names: h.names()}
	if ct := h.all("content-type"); len(ct) > 1 && slices.ContainsFunc(ct[1:], func(v string) bool { return v != ct[0] }) {
		// Python reads the first, other readers the last: parts one
		// of them sees may be hidden from the other.
		w.damaged(pos, "Content-Type given twice")
	}
	main, _, _ := strings.Cut(ctype, "/")
	switch {
	case ctype == "message/delivery-status":
		if f := w.visit(p); f != nil {
			return f
		}
		return w.statusBlocks(pos, depth)
	case main == "message":
		if f := w.visit(p); f != nil {
			return f
		}
		return w.entity(child(pos, 1), depth+1, "text/plain")
	case main == "multipart":
		b, ok, doubt := h.boundary()
		if doubt != "" {
			w.damaged(pos, doubt)
		}
		if !ok {
			w.damaged(pos, "multipart without a boundary")
			break
		}
		if len(b)+2+w.src.stackLen > maxBoundaries {
			w.damaged(pos, "boundaries over 1 MiB")
			break
		}
		if f := w.visit(p); f != nil {
			return f
		}
		def := "text/plain"
		if ctype == "multipart/digest" {
			def = "message/rfc822"
		}
		return w.multipart(pos, depth, []byte("--"+b), def)
	}
	cte, _ := h.get("content-transfer-encoding")
	return w.leaf(p, strings.ToLower(strings.TrimSpace(cte)))
}

// header reads a part's header block: the lines up to a blank line (which
// is consumed), or up to the first line that is not a header line (which
// is left as the start of the body), or up to the part's end.
func (w *mimeWalk) header(pos string) mimeHeader {
	var lines [][]byte
	size := 0
	for {
		l, ok := w.src.next()
		if !ok {
			break
		}
		if w.src.piece {
			// Over 1 MiB: body, unless Python would take it for a
			// header line, which the walk cannot hold.
			if headerLine(l) {
				w.damaged(pos, "header line over 1 MiB")
			}
			w.src.unread(l)
			break
		}
		if !headerLine(l) {
			if !isBlankLine(l) {
				w.src.unread(l)
			}
			break
		}
		size += len(l)
		if size > maxMIMEHeader {
			w.damaged(pos, "header over 1 MiB")
			continue
		}
		lines = append(lines, bytes.Clone(l))
	}
	return parseMIMEHeader(lines)
}

// headerLine tells what Python's parser takes for a header line: "From ",
// a continuation (leading blank), or printable non-blank characters up to
// a colon.
func headerLine(l []byte) bool {
	if l[0] == ' ' || l[0] == '\t' || bytes.HasPrefix(l, []byte("From ")) {
		return true
	}
	for _, c := range l {
		if c == ':' {
			return true
		}
		if c < '!' || c > '~' {
			return false
		}
	}
	return false
}

// multipart walks the preamble, the parts and the epilogue of a multipart
// with delimiter sep. A part ends at any delimiter of its own multipart or
// of an enclosing one; without a close delimiter the multipart ends where
// its parent does.
func (w *mimeWalk) multipart(pos string, depth int, sep []byte, def string) *Finding {
	started, n := false, 0
	for {
		l, ok := w.src.next()
		if !ok {
			break
		}
		kind := notDelimiter
		if !w.src.piece {
			kind = delimiter(l, sep)
		}
		if kind == closeDelimiter {
			if !started {
				w.damaged(pos, "multipart closed before its first part")
			}
			for _, ok := w.src.next(); ok; _, ok = w.src.next() {
			} // the epilogue
			return nil
		}
		if kind == notDelimiter {
			continue // the preamble
		}
		started = true
		// Python skips delimiters that follow one another.
		for {
			l, ok := w.src.next()
			if !ok {
				break
			}
			if w.src.piece || delimiter(l, sep) == notDelimiter {
				w.src.unread(l)
				break
			}
		}
		n++
		w.src.push(partEnd{sep: sep})
		f := w.entity(child(pos, n), depth+1, def)
		w.src.pop()
		if f != nil {
			return f
		}
	}
	if !started {
		w.damaged(pos, "multipart without a delimiter line")
	}
	return nil
}

// statusBlocks walks a message/delivery-status: blocks of fields separated
// by blank lines, each a part of its own (Python's view).
func (w *mimeWalk) statusBlocks(pos string, depth int) *Finding {
	for i := 1; ; i++ {
		w.src.push(partEnd{blank: true})
		f := w.entity(child(pos, i), depth+1, "text/plain")
		w.src.pop()
		if f != nil {
			return f
		}
		if _, ok := w.src.next(); !ok { // the blank line
			return nil
		}
		l, ok := w.src.next()
		if !ok {
			return nil
		}
		w.src.unread(l)
	}
}

// leaf hands a part with a body to visit, then reads what visit left.
func (w *mimeWalk) leaf(p *mimePart, cte string) *Finding {
	body := &partBody{src: w.src}
	p.Text = strings.HasPrefix(p.Type, "text/")
	p.Body = decodeBody(body, cte)
	f := w.visit(p)
	io.Copy(io.Discard, body)
	return f
}

// decodeBody undoes base64 and quoted-printable; other encodings are read
// as they are. Damage in the encoding ends the decoded body early.
func decodeBody(r io.Reader, cte string) io.Reader {
	switch cte {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Only{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// partBody reads the lines of the current part up to its end.
type partBody struct {
	src  *lineSource
	rest []byte
	done bool
}

func (b *partBody) Read(p []byte) (int, error) {
	for len(b.rest) == 0 {
		if b.done {
			return 0, io.EOF
		}
		l, ok := b.src.next()
		if !ok {
			b.done = true
			return 0, io.EOF
		}
		b.rest = l
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

// base64Only drops what is not base64 (line ends, blanks, junk), as mail
// readers do.
type base64Only struct {
	r io.Reader
}

func (b *base64Only) Read(p []byte) (int, error) {
	for {
		n, err := b.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}
