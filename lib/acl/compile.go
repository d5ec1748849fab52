package acl

import (
	"encoding/binary"
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

// write puts the rule set into a fresh database: one blob a shard, put
// in key order with pages filled up, since the file is never updated in
// place.
func (c *Compiled) write(tx *bolt.Tx) error {
	keys := shardEntriesOf(entries(c.keys))
	cidr := shardEntriesOf(entries(c.cidr))
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	for _, kv := range [][2][]byte{
		{metaVersion, []byte(layoutVersion)},
		{metaCIDR4, lengths(c.bits4)},
		{metaCIDR6, lengths(c.bits6)},
		{metaKeyShards, binary.BigEndian.AppendUint32(nil, keys.count)},
		{metaCIDRShards, binary.BigEndian.AppendUint32(nil, cidr.count)},
		{metaLinesPer, binary.BigEndian.AppendUint32(nil, linesPerShard)},
	} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	for _, b := range []struct {
		name []byte
		t    sharded
	}{{bucketKeys, keys}, {bucketCIDR, cidr}} {
		if err := putTables(tx, b.name, b.t); err != nil {
			return err
		}
	}
	return c.putLines(tx)
}

// entry is one key and value of a table.
type entry struct{ key, value []byte }

func entries(kv map[string][]byte) []entry {
	es := make([]entry, 0, len(kv))
	for k, v := range kv {
		es = append(es, entry{[]byte(k), v})
	}
	return es
}

// putTables creates bucket name holding one sorted-table blob for each
// shard of t that has entries. The blobs share one buffer, which bbolt
// reads at the commit.
func putTables(tx *bolt.Tx, name []byte, t sharded) error {
	bk, err := tx.CreateBucket(name)
	if err != nil {
		return err
	}
	bk.FillPercent = 1.0
	size := 0
	for _, sh := range t.shards {
		if len(sh) > 0 {
			size += tableSize(sh)
		}
	}
	buf := make([]byte, 0, size)
	for s, sh := range t.shards {
		if len(sh) == 0 {
			continue
		}
		at := len(buf)
		buf = appendTable(buf, sh)
		if err := bk.Put(shardKey(uint32(s)), buf[at:len(buf):len(buf)]); err != nil {
			return fmt.Errorf("shard %d: %w", s, err)
		}
	}
	return nil
}

// putLines creates bucket "lines" holding a line-table blob for each
// linesPerShard line numbers that have a stored line.
func (c *Compiled) putLines(tx *bolt.Tx) error {
	bk, err := tx.CreateBucket(bucketLines)
	if err != nil {
		return err
	}
	bk.FillPercent = 1.0
	nums := make([]int, 0, len(c.lines))
	size := 0
	for n, text := range c.lines {
		nums = append(nums, n)
		size += len(text)
	}
	slices.Sort(nums)
	shards := 0
	for i, n := range nums {
		if i == 0 || n/linesPerShard != nums[i-1]/linesPerShard {
			shards++
		}
	}
	buf := make([]byte, 0, size+shards*4*(linesPerShard+1))
	var texts [linesPerShard]string
	for i := 0; i < len(nums); {
		shard := nums[i] / linesPerShard
		texts = [linesPerShard]string{}
		for ; i < len(nums) && nums[i]/linesPerShard == shard; i++ {
			texts[nums[i]%linesPerShard] = c.lines[nums[i]]
		}
		at := len(buf)
		buf = appendLines(buf, &texts)
		if err := bk.Put(shardKey(uint32(shard)), buf[at:len(buf):len(buf)]); err != nil {
			return fmt.Errorf("lines shard %d: %w", shard, err)
		}
	}
	return nil
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
