package scan

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"

	"github.com/emersion/go-message"
)

// MIMERules are gw-scan's built-in content rules: banned attachment names
// (by extension, also inside zip archives), banned content types, and the
// MIME bomb limits.
type MIMERules struct {
	BannedExt   map[string]bool // lowercase, without the dot
	BannedTypes []string        // lowercase "type/subtype" or "type/*"
	MaxDepth    int             // multipart and message/rfc822 nesting
	MaxParts    int             // parts in the whole message
	MaxArchive  int64           // decoded zip bytes read to list its names
	EICAR       bool            // look for the EICAR test string without clamd
}

// Defaults for MIMERules; control files override them (gw-scan(8)).
var (
	DefaultBannedExt = []string{"exe", "com", "scr", "pif", "bat", "cmd", "cpl", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "lnk", "msi", "reg"}
	// DefaultBannedTypes are Windows executables by their declared type.
	DefaultBannedTypes = []string{"application/x-msdownload", "application/x-dosexec", "application/x-msdos-program"}
)

const (
	DefaultMaxDepth   = 20
	DefaultMaxParts   = 1000
	DefaultMaxArchive = 10 << 20
)

// Finding is what a rule found: its verdict class, the rule and the part.
type Finding struct {
	Class string // ClassBanned, ClassBomb, ClassVirus or ClassBadMIME
	Rule  string // e.g. "ext=exe", "type=application/x-msdownload", "depth>20"
	Part  string // the part's position, "1.2"; "" for the top
}

func (f *Finding) String() string {
	if f.Part == "" {
		return f.Rule
	}
	return f.Rule + " part=" + f.Part
}

// Verdict classes: what a scan can find. Each has an action per domain.
const (
	ClassVirus    = "virus"    // clamd FOUND, or EICAR by the built-in rule
	ClassBanned   = "banned"   // a banned attachment name or content type
	ClassBomb     = "bomb"     // nesting or part count over the limits
	ClassBadMIME  = "badmime"  // a structure the parser could not follow
	ClassSpam     = "spam"     // spamd says spam (its own threshold)
	ClassSpamKill = "spamkill" // score at or over control/spamkill
	ClassFail     = "fail"     // a scanner down, slow or in error
)

// eicar is the start of the EICAR test file, unique enough to match on.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!`

var errStop = errors.New("stop")

// Inspect walks the MIME structure of the message in r and returns the
// first rule it breaks, or nil. It reads r once, holds at most one zip
// archive (MaxArchive bytes) in memory and stops at the first finding; a
// structure it cannot parse is a ClassBadMIME finding, not an error.
// Errors are read errors of r.
func (rules *MIMERules) Inspect(r io.Reader) (*Finding, error) {
	w := walker{rules: rules}
	cr := &countingReader{r: r}
	ent, err := message.Read(cr)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		if cr.err != nil {
			return nil, cr.err
		}
		return &Finding{Class: ClassBadMIME, Rule: "header: " + truncate(err.Error(), 80)}, nil
	}
	f := w.entity(ent, "", 0)
	if cr.err != nil {
		return nil, cr.err
	}
	return f, nil
}

// countingReader remembers r's own errors so a read error is not taken for
// bad MIME.
type countingReader struct {
	r   io.Reader
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

type walker struct {
	rules *MIMERules
	parts int
}

func child(pos string, i int) string {
	if pos == "" {
		return fmt.Sprint(i)
	}
	return fmt.Sprintf("%s.%d", pos, i)
}

// entity checks one entity and, for multiparts and attached messages, its
// children: depth is its nesting, pos its position.
func (w *walker) entity(e *message.Entity, pos string, depth int) *Finding {
	w.parts++
	if w.rules.MaxParts > 0 && w.parts > w.rules.MaxParts {
		return &Finding{Class: ClassBomb, Rule: fmt.Sprintf("parts>%d", w.rules.MaxParts), Part: pos}
	}
	if w.rules.MaxDepth > 0 && depth > w.rules.MaxDepth {
		return &Finding{Class: ClassBomb, Rule: fmt.Sprintf("depth>%d", w.rules.MaxDepth), Part: pos}
	}
	ctype, params, _ := e.Header.ContentType()
	ctype = strings.ToLower(ctype)
	if ctype == "" {
		ctype = "text/plain"
	}
	if t := w.bannedType(ctype); t != "" {
		return &Finding{Class: ClassBanned, Rule: "type=" + t, Part: pos}
	}
	name := attachmentName(e.Header, params)
	if ext := w.bannedName(name); ext != "" {
		return &Finding{Class: ClassBanned, Rule: "ext=" + ext, Part: pos}
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 1; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return &Finding{Class: ClassBadMIME, Rule: "multipart: " + truncate(err.Error(), 80), Part: pos}
			}
			if f := w.entity(p, child(pos, i), depth+1); f != nil {
				return f
			}
		}
	}
	if ctype == "message/rfc822" || ctype == "message/global" {
		inner, err := message.Read(e.Body)
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return &Finding{Class: ClassBadMIME, Rule: "message: " + truncate(err.Error(), 80), Part: pos}
		}
		return w.entity(inner, child(pos, 1), depth+1)
	}
	if isZip(ctype, name) && w.rules.MaxArchive > 0 {
		return w.archive(e.Body, pos)
	}
	if w.rules.EICAR {
		if found, err := contains(e.Body, eicar); err == nil && found {
			return &Finding{Class: ClassVirus, Rule: "eicar", Part: pos}
		}
	}
	io.Copy(io.Discard, e.Body)
	return nil
}

// attachmentName returns the part's file name: Content-Disposition's
// filename, else Content-Type's name, RFC 2047 words decoded.
func attachmentName(h message.Header, ctParams map[string]string) string {
	name := ""
	if _, p, err := h.ContentDisposition(); err == nil {
		name = p["filename"]
	}
	if name == "" {
		name = ctParams["name"]
	}
	if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
		name = dec
	}
	return name
}

func (w *walker) bannedType(ctype string) string {
	for _, b := range w.rules.BannedTypes {
		if b == ctype || strings.HasSuffix(b, "/*") && strings.HasPrefix(ctype, b[:len(b)-1]) {
			return ctype
		}
	}
	return ""
}

// bannedName returns the banned extension of name, or "". Trailing dots
// and blanks, which Windows ignores, are ignored too; so is a directory.
func (w *walker) bannedName(name string) string {
	name = strings.ToLower(strings.TrimRight(name, ". \t"))
	if name == "" {
		return ""
	}
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	if ext := name[i+1:]; w.rules.BannedExt[ext] {
		return ext
	}
	return ""
}

func isZip(ctype, name string) bool {
	return ctype == "application/zip" || ctype == "application/x-zip-compressed" ||
		strings.HasSuffix(strings.ToLower(name), ".zip")
}

// archive lists the names in a zip archive without decompressing any; an
// archive over MaxArchive or one that does not open is not looked into
// (clamd, if configured, still scans it).
func (w *walker) archive(body io.Reader, pos string) *Finding {
	b, err := io.ReadAll(io.LimitReader(body, w.rules.MaxArchive+1))
	io.Copy(io.Discard, body)
	if err != nil || int64(len(b)) > w.rules.MaxArchive {
		return nil
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil
	}
	for _, f := range zr.File {
		w.parts++
		if w.rules.MaxParts > 0 && w.parts > w.rules.MaxParts {
			return &Finding{Class: ClassBomb, Rule: fmt.Sprintf("parts>%d", w.rules.MaxParts), Part: pos}
		}
		if ext := w.bannedName(f.Name); ext != "" {
			return &Finding{Class: ClassBanned, Rule: "zip-ext=" + ext, Part: pos}
		}
	}
	return nil
}

// contains reports whether r holds s, reading r once in blocks.
func contains(r io.Reader, s string) (bool, error) {
	buf := make([]byte, 32<<10)
	keep := 0
	for {
		n, err := r.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], []byte(s)) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		total := keep + n
		keep = min(total, len(s)-1)
		copy(buf, buf[total-keep:total])
	}
}
