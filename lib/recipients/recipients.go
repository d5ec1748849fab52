// Package recipients answers whether a recipient of an accepted domain
// exists, from control/recipients/: one file a domain, named after the
// domain in lower case, listing its valid local parts one a line ('#'
// comments and empty lines skipped, as in every list file). A line "*"
// accepts every local part. A domain without a file is not checked.
//
// Files are read when first needed and read again when their size or
// modification time changes, so a long-running gw-smtpd sees edits at the
// next recipient without a signal.
package recipients

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gw/lib/control"
)

// Dir is a recipients directory.
type Dir struct {
	path string
	mu   sync.Mutex
	sets map[string]*set
}

type set struct {
	size  int64
	mtime time.Time
	any   bool
	local map[string]bool
}

// Open returns the directory at path; a missing directory checks nothing.
func Open(path string) *Dir { return &Dir{path: path, sets: map[string]*set{}} }

// Valid reports whether local@domain is a valid recipient. Local parts
// are compared without regard to case, as sysadmins expect.
func (d *Dir) Valid(local, domain string) (bool, error) {
	domain = strings.ToLower(domain)
	if domain == "" || strings.ContainsAny(domain, "/\x00") || domain[0] == '.' {
		return false, nil // never a file name outside the directory
	}
	s, err := d.load(domain)
	if err != nil || s == nil {
		return s == nil && err == nil, err
	}
	return s.any || s.local[strings.ToLower(local)], nil
}

func (d *Dir) load(domain string) (*set, error) {
	p := filepath.Join(d.path, domain)
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recipients/%s: %w", domain, err)
	}
	d.mu.Lock()
	s := d.sets[domain]
	d.mu.Unlock()
	if s != nil && s.size == st.Size() && s.mtime.Equal(st.ModTime()) {
		return s, nil
	}
	lines, ok, err := control.Dir(d.path).List(domain)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	s = &set{size: st.Size(), mtime: st.ModTime(), local: make(map[string]bool, len(lines))}
	for _, l := range lines {
		if l == "*" {
			s.any = true
		}
		s.local[strings.ToLower(l)] = true
	}
	d.mu.Lock()
	d.sets[domain] = s
	d.mu.Unlock()
	return s, nil
}
