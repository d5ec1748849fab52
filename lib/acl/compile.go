package acl

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// lockTimeout bounds the wait for the temporary file's lock, held only by
// another gw-tcprules writing the same temporary path.
const lockTimeout = 10 * time.Second

// Compiled is a rule set ready to be written: every key with the record
// of the rule that stored it, and the rules lines. Keys, records and
// lines are kept in arenas, referred to by offsets, so that a million
// rules make a few large allocations without pointers for the collector
// to follow, and no map: duplicate keys are resolved by sorting when the
// set is written.
type Compiled struct {
	keyArena, recArena, textArena []byte
	keys, cidr                    []tabEnt // in the order added
	lines                         []lineEnt
	bits4, bits6                  [129]bool
	lit                           []string // scratch for ExpandAddress
}

// span is a part of an arena.
type span struct{ off, n int }

func (s span) of(arena []byte) []byte { return arena[s.off : s.off+s.n] }

// tabEnt is a key of the "keys" or "cidr" table: its hash, the key and
// the record.
type tabEnt struct {
	hash, line uint32 // line: the record's line number
	key, rec   span
}

// lineEnt is a rules line that said allow or deny.
type lineEnt struct {
	n    uint32
	text span
}

// NewCompiled returns an empty rule set.
func NewCompiled() *Compiled { return &Compiled{} }

// grow makes room for about lines rules taking bytes of text.
func (c *Compiled) grow(lines, bytes int) {
	c.keys = slices.Grow(c.keys, lines)
	c.lines = slices.Grow(c.lines, lines)
	c.keyArena = slices.Grow(c.keyArena, bytes/3)
	c.recArena = slices.Grow(c.recArena, bytes)
	c.textArena = slices.Grow(c.textArena, bytes)
}

// Add stores r under each of its keys; for a key stored twice the first
// line wins, as with tcprules. It returns a warning for an address that
// can never match, or "".
func (c *Compiled) Add(r Rule) (warning string, err error) {
	k, err := c.expand(r.Line, r.Text, r.Address)
	if err != nil {
		return "", err
	}
	at := len(c.recArena)
	c.recArena = append(c.recArena, encodeRecord(r)...)
	c.store(k, r.Line, r.Text, span{at, len(c.recArena) - at})
	return lineWarning(r.Line, k), nil
}

// addParsed is Add for a line the parser holds.
func (c *Compiled) addParsed(p *parsed) (warning string, err error) {
	k, err := c.expand(p.line, p.text, p.address)
	if err != nil {
		return "", err
	}
	at := len(c.recArena)
	c.recArena = appendRecord(c.recArena, p)
	c.store(k, p.line, p.text, span{at, len(c.recArena) - at})
	return lineWarning(p.line, k), nil
}

func lineWarning(line int, k Keys) string {
	if k.Warning != "" {
		return fmt.Sprintf("line %d: %s", line, k.Warning)
	}
	return ""
}

// expand returns the keys of address, refusing one too long to store.
func (c *Compiled) expand(line int, text, address string) (Keys, error) {
	k, reason := expandInto(address, c.lit[:0], true)
	if reason != "" {
		return Keys{}, &ParseError{Line: line, Text: text, Reason: reason}
	}
	c.lit = k.Literal[:0]
	for _, key := range k.Literal {
		if len(key) >= bolt.MaxKeySize {
			return Keys{}, &ParseError{Line: line, Text: clip(text), Reason: fmt.Sprintf("address longer than %d bytes", bolt.MaxKeySize-2)}
		}
	}
	return k, nil
}

// store adds k's keys with the record at rec, and the line.
func (c *Compiled) store(k Keys, line int, text string, rec span) {
	if k.IsCIDR() {
		at := len(c.keyArena)
		c.keyArena = appendCIDRKey(c.keyArena, k.Prefix)
		key := span{at, len(c.keyArena) - at}
		c.cidr = append(c.cidr, tabEnt{fnv32a(string(key.of(c.keyArena))), uint32(line), key, rec})
		if k.Prefix.Addr().Is4() {
			c.bits4[k.Prefix.Bits()] = true
		} else {
			c.bits6[k.Prefix.Bits()] = true
		}
	}
	for _, lit := range k.Literal {
		at := len(c.keyArena)
		c.keyArena = append(c.keyArena, lit...)
		c.keys = append(c.keys, tabEnt{fnv32a(lit), uint32(line), span{at, len(lit)}, rec})
	}
	at := len(c.textArena)
	c.textArena = append(c.textArena, text...)
	c.lines = append(c.lines, lineEnt{uint32(line), span{at, len(text)}})
}

// Compile parses rules text from r into a rule set; warn, if not nil,
// hears about addresses that can never match.
func Compile(r io.Reader, warn func(string)) (*Compiled, error) {
	c := NewCompiled()
	sized := func(data string) { c.grow(strings.Count(data, "\n")+1, len(data)) }
	err := parseInput(r, sized, func(p *parsed) error {
		w, err := c.addParsed(p)
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

// dbMode is the compiled database's mode: its group (the listeners',
// which the directory passes on when it is set-group-ID, as gw-instance
// makes acl/) may read it, others not, so that no local user can read the
// rules, nor lock the file under the listeners (see readLockWait).
const dbMode = 0o640

// compileMmapSize is the mapping a compile starts with: room for tens of
// millions of rules.
const compileMmapSize = 4 << 30

// createDB opens a fresh bbolt file at path, truncating what was there.
// bbolt fsyncs at every commit, so the file is durable once closed.
func createDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, dbMode, &bolt.Options{
		Timeout: lockTimeout,
		// Address space, not memory or disk: without it bbolt maps the
		// file again each time a big commit outgrows the mapping, and
		// copies every node out of the old one first (most of the time
		// of a million-rule compile went there).
		InitialMmapSize: compileMmapSize,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag|os.O_TRUNC, mode)
			if err != nil {
				return nil, err
			}
			// A file that was there keeps its mode through O_TRUNC.
			if err := f.Chmod(dbMode); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
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
	used := newLineSet(c.lines)
	keys := shardTable(c.keys, c.keyArena, c.recArena, used)
	cidr := shardTable(c.cidr, c.keyArena, c.recArena, used)
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	for _, kv := range [][2][]byte{
		{metaVersion, []byte(layoutVersion)},
		{metaCIDR4, lengths(&c.bits4)},
		{metaCIDR6, lengths(&c.bits6)},
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
	return c.putLines(tx, used)
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
	for s := range t.count {
		if sh := t.shard(s); len(sh) > 0 {
			size += t.tableSize(sh)
		}
	}
	buf := make([]byte, 0, size)
	for s := range t.count {
		sh := t.shard(s)
		if len(sh) == 0 {
			continue
		}
		at := len(buf)
		buf = t.appendTable(buf, sh)
		if err := bk.Put(shardKey(s), buf[at:len(buf):len(buf)]); err != nil {
			return fmt.Errorf("shard %d: %w", s, err)
		}
	}
	return nil
}

// lineSet is the set of line numbers whose rule stored a key: a bitmap
// when the numbers are dense (always, from Compile), else a map.
type lineSet struct {
	bits []uint64
	m    map[uint32]bool
}

func newLineSet(lines []lineEnt) *lineSet {
	top := uint32(0)
	for _, l := range lines {
		top = max(top, l.n)
	}
	if uint64(top) <= 4*uint64(len(lines))+4096 {
		return &lineSet{bits: make([]uint64, top/64+1)}
	}
	return &lineSet{m: map[uint32]bool{}}
}

func (u *lineSet) add(n uint32) {
	if u.m != nil {
		u.m[n] = true
	} else if int(n/64) < len(u.bits) {
		u.bits[n/64] |= 1 << (n % 64)
	}
}

func (u *lineSet) has(n uint32) bool {
	if u.m != nil {
		return u.m[n]
	}
	return int(n/64) < len(u.bits) && u.bits[n/64]&(1<<(n%64)) != 0
}

// putLines creates bucket "lines" holding a line-table blob for each
// linesPerShard line numbers that have a used line; for a number added
// twice the last text is kept.
func (c *Compiled) putLines(tx *bolt.Tx, used *lineSet) error {
	bk, err := tx.CreateBucket(bucketLines)
	if err != nil {
		return err
	}
	bk.FillPercent = 1.0
	lines := make([]lineEnt, 0, len(c.lines))
	size := 0
	for _, l := range c.lines {
		if used.has(l.n) {
			lines = append(lines, l)
			size += l.text.n
		}
	}
	if !slices.IsSortedFunc(lines, func(a, b lineEnt) int { return cmp.Compare(a.n, b.n) }) {
		slices.SortStableFunc(lines, func(a, b lineEnt) int { return cmp.Compare(a.n, b.n) })
	}
	shards := 0
	for i, l := range lines {
		if i == 0 || l.n/linesPerShard != lines[i-1].n/linesPerShard {
			shards++
		}
	}
	buf := make([]byte, 0, size+shards*4*(linesPerShard+1))
	var texts [linesPerShard][]byte
	for i := 0; i < len(lines); {
		shard := lines[i].n / linesPerShard
		texts = [linesPerShard][]byte{}
		for ; i < len(lines) && lines[i].n/linesPerShard == shard; i++ {
			texts[lines[i].n%linesPerShard] = lines[i].text.of(c.textArena)
		}
		at := len(buf)
		buf = appendLines(buf, &texts)
		if err := bk.Put(shardKey(shard), buf[at:len(buf):len(buf)]); err != nil {
			return fmt.Errorf("lines shard %d: %w", shard, err)
		}
	}
	return nil
}

// lengths returns the prefix lengths in set, longest first.
func lengths(set *[129]bool) []byte {
	var b []byte
	for n := len(set) - 1; n >= 0; n-- {
		if set[n] {
			b = append(b, byte(n))
		}
	}
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
