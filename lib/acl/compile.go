package acl

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// lockTimeout bounds the wait for the temporary file's lock, held only by
// another gw-tcprules writing the same temporary path.
const lockTimeout = 10 * time.Second

// Compiled is a rule set ready to be written: every key with the rule
// that owns it (the first line that stored it) and the rules lines.
type Compiled struct {
	keys  map[string][]byte
	cidr  map[string][]byte
	lines map[int]string
	bits4 map[int]bool
	bits6 map[int]bool
}

// NewCompiled returns an empty rule set.
func NewCompiled() *Compiled {
	return &Compiled{
		keys:  map[string][]byte{},
		cidr:  map[string][]byte{},
		lines: map[int]string{},
		bits4: map[int]bool{},
		bits6: map[int]bool{},
	}
}

// Add stores r under each of its keys that no earlier rule has stored:
// for a duplicate key the first line wins, as with tcprules. It returns a
// warning for an address that can never match, or "".
func (c *Compiled) Add(r Rule) (warning string, err error) {
	k, err := ExpandAddress(r.Address)
	if err != nil {
		return "", &ParseError{Line: r.Line, Text: r.Text, Reason: err.Error()}
	}
	for _, key := range k.Literal {
		if len(key) >= bolt.MaxKeySize {
			return "", &ParseError{Line: r.Line, Text: clip(r.Text), Reason: fmt.Sprintf("address longer than %d bytes", bolt.MaxKeySize-2)}
		}
	}
	rec := encodeRecord(r)
	used := false
	if k.IsCIDR() {
		key := string(cidrKey(k.Prefix))
		if _, dup := c.cidr[key]; !dup {
			c.cidr[key] = rec
			used = true
			if k.Prefix.Addr().Is4() {
				c.bits4[k.Prefix.Bits()] = true
			} else {
				c.bits6[k.Prefix.Bits()] = true
			}
		}
	}
	for _, key := range k.Literal {
		if _, dup := c.keys[key]; !dup {
			c.keys[key] = rec
			used = true
		}
	}
	if used {
		c.lines[r.Line] = r.Text
	}
	if k.Warning != "" {
		return fmt.Sprintf("line %d: %s", r.Line, k.Warning), nil
	}
	return "", nil
}

// Compile parses rules text from r into a rule set; warn, if not nil,
// hears about addresses that can never match.
func Compile(r io.Reader, warn func(string)) (*Compiled, error) {
	c := NewCompiled()
	err := Parse(r, func(rule Rule) error {
		w, err := c.Add(rule)
		if w != "" && warn != nil {
			warn(w)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Build replaces the database at dbPath with the rules read from r, the
// way tcprules does: tmpPath is created (an existing file there is
// truncated), written, fsynced and renamed over dbPath; then the directory
// is fsynced. tmpPath must be on dbPath's filesystem. On any error dbPath
// is left as it was and tmpPath is removed. A *ParseError means bad input;
// any other error is system trouble.
func Build(r io.Reader, dbPath, tmpPath string, warn func(string)) error {
	// Create the temporary file before reading, as tcprules does, so that
	// an unwritable destination is reported whatever the input.
	db, err := createDB(tmpPath)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		db.Close()
		os.Remove(tmpPath)
		return err
	}
	c, err := Compile(r, warn)
	if err != nil {
		return fail(err)
	}
	if err := db.Update(c.write); err != nil {
		return fail(fmt.Errorf("unable to write %s: %w", tmpPath, err))
	}
	if err := db.Close(); err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("unable to write %s: %w", tmpPath, err)
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("unable to move %s to %s: %w", tmpPath, dbPath, err)
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return fmt.Errorf("unable to sync the directory of %s: %w", dbPath, err)
	}
	return nil
}

// compileMmapSize is the mapping a compile starts with: room for tens of
// millions of rules.
const compileMmapSize = 4 << 30

// createDB opens a fresh bbolt file at path, truncating what was there.
// bbolt fsyncs at every commit, so the file is durable once closed.
func createDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o644, &bolt.Options{
		Timeout: lockTimeout,
		// Address space, not memory or disk: without it bbolt maps the
		// file again each time a big commit outgrows the mapping, and
		// copies every node out of the old one first (most of the time
		// of a million-rule compile went there).
		InitialMmapSize: compileMmapSize,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			return os.OpenFile(name, flag|os.O_TRUNC, mode)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", path, err)
	}
	// The file is written once: grow it to what the commit needs, not a
	// 16 MiB step beyond (which the large mapping would otherwise add).
	db.AllocSize = os.Getpagesize()
	return db, nil
}

// write puts the rule set into a fresh database, keys in sorted order and
// pages filled up, since the file is never updated in place.
func (c *Compiled) write(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(metaVersion, []byte(layoutVersion)); err != nil {
		return err
	}
	if err := meta.Put(metaCIDR4, lengths(c.bits4)); err != nil {
		return err
	}
	if err := meta.Put(metaCIDR6, lengths(c.bits6)); err != nil {
		return err
	}
	lines := make([]entry, 0, len(c.lines))
	for n, text := range c.lines {
		lines = append(lines, entry{lineKey(n), []byte(text)})
	}
	for _, b := range []struct {
		name    []byte
		entries []entry
	}{{bucketKeys, markedEntries(c.keys)}, {bucketCIDR, entries(c.cidr)}, {bucketLines, lines}} {
		if err := putSorted(tx, b.name, b.entries); err != nil {
			return err
		}
	}
	return nil
}

// entry is one key and value of a bucket.
type entry struct{ key, value []byte }

func entries(kv map[string][]byte) []entry {
	es := make([]entry, 0, len(kv))
	for k, v := range kv {
		es = append(es, entry{[]byte(k), v})
	}
	return es
}

// markedEntries stores each key as storedKey(key).
func markedEntries(kv map[string][]byte) []entry {
	es := make([]entry, 0, len(kv))
	for k, v := range kv {
		es = append(es, entry{storedKey(k), v})
	}
	return es
}

// putSorted creates bucket name holding es, put in key order: bbolt then
// appends to the last page instead of splitting pages all over the tree.
func putSorted(tx *bolt.Tx, name []byte, es []entry) error {
	bk, err := tx.CreateBucket(name)
	if err != nil {
		return err
	}
	bk.FillPercent = 1.0
	slices.SortFunc(es, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	for _, e := range es {
		if err := bk.Put(e.key, e.value); err != nil {
			return fmt.Errorf("key %q: %w", e.key, err)
		}
	}
	return nil
}

// storedKey is the bucket key for key: bbolt cannot hold an empty key
// (the default rule), so each key is stored after the byte 'k'.
func storedKey(key string) []byte {
	b := make([]byte, 0, 1+len(key))
	return append(append(b, 'k'), key...)
}

// lengths returns the prefix lengths in set, longest first.
func lengths(set map[int]bool) []byte {
	var b []byte
	for n := range set {
		b = append(b, byte(n))
	}
	sort.Slice(b, func(i, j int) bool { return b[i] > b[j] })
	return b
}

// syncDir fsyncs directory dir, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
