package scan

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"sync"
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
	ClassBadMIME  = "badmime"  // a structure the walk cannot follow for certain
	ClassSpam     = "spam"     // spamd says spam (its own threshold)
	ClassSpamKill = "spamkill" // score at or over control/spamkill
	ClassFail     = "fail"     // a scanner down, slow or in error
)

// eicar is the start of the EICAR test file, unique enough to match on.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!`

// Inspect walks the MIME structure of the message in r and returns the
// first rule it breaks, or nil. It reads r once, holds at most one zip
// archive (MaxArchive bytes) and one header block in memory, and stops at
// the first finding. Damage that leaves the structure in doubt is a
// ClassBadMIME finding, reported when no other rule matched: the walk
// goes on past it (mimewalk.go). Errors are read errors of r.
func (rules *MIMERules) Inspect(r io.Reader) (*Finding, error) {
	w := walker{rules: rules}
	cr := &countingReader{r: r}
	f := walkMIME(cr, rules.MaxDepth, rules.MaxParts, w.part)
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
	parts int // zip entries, counted with the MIME parts against MaxParts
}

func child(pos string, i int) string {
	if pos == "" {
		return fmt.Sprint(i)
	}
	return fmt.Sprintf("%s.%d", pos, i)
}

// part checks one part the walk met: its type, its names, and a leaf's
// body (zip entries, EICAR, uuencoded names).
func (w *walker) part(p *mimePart) *Finding {
	if t := w.bannedType(p.Type); t != "" {
		return &Finding{Class: ClassBanned, Rule: "type=" + t, Part: p.Pos}
	}
	zip := isZip(p.Type, "")
	for _, name := range p.Names {
		if ext := w.bannedName(name); ext != "" {
			return &Finding{Class: ClassBanned, Rule: "ext=" + ext, Part: p.Pos}
		}
		zip = zip || isZip(p.Type, name)
	}
	if p.Body == nil {
		return nil
	}
	if zip && w.rules.MaxArchive > 0 {
		return w.archive(p.Body, p.Pos)
	}
	if !w.rules.EICAR && !p.Text {
		return nil
	}
	var found *Finding
	scanBlocks(p.Body, len(eicar), func(b []byte) bool {
		if w.rules.EICAR && bytes.Contains(b, []byte(eicar)) {
			found = &Finding{Class: ClassVirus, Rule: "eicar", Part: p.Pos}
			return false
		}
		// The expression steps through every byte; the search for its
		// literal start does not, and most text has no "begin".
		if p.Text && bytes.Contains(b, uuBeginWord) {
			for _, m := range uuBegin().FindAllSubmatch(b, -1) {
				if ext := w.bannedName(string(m[1])); ext != "" {
					found = &Finding{Class: ClassBanned, Rule: "uu-ext=" + ext, Part: p.Pos}
					return false
				}
			}
		}
		return true
	})
	return found
}

// uuBegin finds the "begin MODE NAME" line of a uuencoded file, which
// mail readers show as an attachment even in a text/plain part.
var uuBegin = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+)`)
})

// uuBeginWord is what every match of uuBegin holds.
var uuBeginWord = []byte("begin")

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

// blockSize is scanBlocks' block; blockBufs keeps its buffers from one
// part to the next (a fresh one a part is zeroed and collected for
// nothing).
const blockSize = 32 << 10

var blockBufs = sync.Pool{New: func() any { return new([blockSize]byte) }}

// scanBlocks passes r to see in blocks that overlap by keep bytes (at
// least 1 KiB, so a line cut between blocks is whole in one of them),
// until see returns false or r ends.
func scanBlocks(r io.Reader, keep int, see func([]byte) bool) {
	keep = max(keep, 1<<10)
	bp := blockBufs.Get().(*[blockSize]byte)
	defer blockBufs.Put(bp)
	buf := bp[:]
	held := 0
	for {
		n, err := io.ReadFull(r, buf[held:])
		if held+n > 0 && !see(buf[:held+n]) {
			return
		}
		if err != nil {
			return
		}
		total := held + n
		held = min(total, keep)
		copy(buf, buf[total-held:total])
	}
}
