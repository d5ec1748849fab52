// Package control reads qmail-style control files: one setting a file in
// an instance's control/ directory, a missing file meaning the default.
//
// The three readers keep qmail's rules (control.c): Line takes the first
// line with trailing blanks stripped; Int takes the leading decimal digits
// of that line, and keeps the default when there are none; List takes
// every line, trailing blanks stripped, skipping empty lines and lines that
// begin with '#'. A file that exists but cannot be read is an error, never
// the default: a gateway must not open up because a file became unreadable.
package control

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Dir is a control directory.
type Dir string

// maxFile bounds what is read of one control file; a larger one is refused.
const maxFile = 64 << 20

func (d Dir) read(name string) ([]byte, bool, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("control/%s: %w", name, err)
	}
	if len(b) > maxFile {
		return nil, false, fmt.Errorf("control/%s: larger than %d bytes", name, maxFile)
	}
	return b, true, nil
}

// Line returns the first line of control file name, trailing blanks
// stripped, and whether the file exists.
func (d Dir) Line(name string) (string, bool, error) {
	note(name, KindLine, "")
	return d.line(name)
}

func (d Dir) line(name string) (string, bool, error) {
	b, ok, err := d.read(name)
	if !ok || err != nil {
		return "", ok, err
	}
	return firstLine(b), true, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " \t\r")
}

// Int returns the number at the start of control file name's first line,
// or def when the file is missing or its line does not begin with a digit.
func (d Dir) Int(name string, def int64) (int64, error) {
	note(name, KindInt, strconv.FormatInt(def, 10))
	line, ok, err := d.line(name)
	if !ok || err != nil {
		return def, err
	}
	return leadingInt(line, def), nil
}

func leadingInt(s string, def int64) int64 {
	var v int64
	n := 0
	for ; n < len(s) && s[n] >= '0' && s[n] <= '9'; n++ {
		if v > (1<<62)/10 {
			return 1 << 62 // saturate rather than wrap
		}
		v = v*10 + int64(s[n]-'0')
	}
	if n == 0 {
		return def
	}
	return v
}

// List returns the entries of list file name and whether it exists.
func (d Dir) List(name string) ([]string, bool, error) {
	note(name, KindList, "")
	b, ok, err := d.read(name)
	if !ok || err != nil {
		return nil, ok, err
	}
	return parseList(b), true, nil
}

func parseList(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, line)
	}
	return out
}

// Me returns control/me, the host's name, which several settings default to.
func (d Dir) Me() (string, bool, error) { return d.Line("me") }

// LineOrMe returns control file name's line, else control/me, else def.
func (d Dir) LineOrMe(name, def string) (string, error) {
	note(name, KindLine, "")
	if v, ok, err := d.line(name); ok || err != nil {
		return v, err
	}
	note("me", KindLine, "")
	if v, ok, err := d.line("me"); ok || err != nil {
		return v, err
	}
	return def, nil
}
