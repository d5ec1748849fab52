package acl

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// Shards. The "keys" and "cidr" buckets hold one entry per shard, not one
// per key: bbolt spends most of a compile on its per-Put work, and a few
// thousand Puts of blobs cost little next to a million Puts of records.
// A key's shard is fnv32a(key) & (shards-1); the shard count, a power of
// two, is in bucket "meta". A shard's blob is a sorted table:
//
//	count n (4 bytes, big-endian)
//	n offsets (4 bytes each, big-endian, from the blob's start), one an entry
//	n entries in increasing byte order of their keys, keys distinct:
//	  key length (2 bytes, big-endian), key, record
//
// Entry i runs from its offset to the next entry's offset (the last one to
// the blob's end), so the record is what follows the key. A lookup
// binary-searches the table in place, in bbolt's mapping.
//
// Bucket "lines" holds one entry per linesPerShard consecutive line
// numbers: key line/linesPerShard, value a direct table of
// linesPerShard+1 offsets (4 bytes each, big-endian, from the blob's
// start), the text of line l running from offset l%linesPerShard to the
// next one; an empty span is a line not stored.

// shardEntries aims at this many entries a shard: few enough for a short
// binary search, enough to fill a page or so a blob.
const shardEntries = 32

// linesPerShard is how many consecutive line numbers a "lines" blob covers.
const linesPerShard = 256

// fnv32a is the 32-bit FNV-1a hash of key.
func fnv32a(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}

// shardCount returns the shard count for n keys: a power of two, at least
// 1, near n/shardEntries.
func shardCount(n int) uint32 {
	c := uint32(1)
	for int(c)*shardEntries < n && c < 1<<30 {
		c <<= 1
	}
	return c
}

// shardKey returns the bucket key of shard s.
func shardKey(s uint32) []byte { return binary.BigEndian.AppendUint32(nil, s) }

// sharded is a table's entries grouped by shard, ready to be written.
type sharded struct {
	count      uint32
	keys, recs []byte   // the arenas of ents' keys and records
	ents       []tabEnt // by shard, each shard sorted by key, keys distinct
	starts     []int    // shard s is ents[starts[s]:starts[s+1]]
}

func (t *sharded) shard(s uint32) []tabEnt { return t.ents[t.starts[s]:t.starts[s+1]] }

// shardTable groups es by shard, sorts each shard by key and keeps the
// first entry added for each key (the first line wins, as in tcprules),
// adding the line number of each record kept to used.
func shardTable(es []tabEnt, keys, recs []byte, used *lineSet) sharded {
	count := shardCount(len(es))
	// Counting sort by shard, stable: the order added is kept in a shard.
	starts := make([]int, count+1)
	for _, e := range es {
		starts[e.hash&(count-1)+1]++
	}
	for s := 1; s <= int(count); s++ {
		starts[s] += starts[s-1]
	}
	next := slices.Clone(starts[:count])
	all := make([]tabEnt, len(es))
	for _, e := range es {
		s := e.hash & (count - 1)
		all[next[s]] = e
		next[s]++
	}
	// Sort each shard, drop the later duplicates and close the gaps.
	out := 0
	for s := range count {
		sh := all[starts[s]:starts[s+1]]
		slices.SortStableFunc(sh, func(a, b tabEnt) int { return bytes.Compare(a.key.of(keys), b.key.of(keys)) })
		starts[s] = out
		for i, e := range sh {
			if i > 0 && bytes.Equal(e.key.of(keys), sh[i-1].key.of(keys)) {
				continue
			}
			all[out] = e
			out++
			used.add(e.line)
		}
	}
	starts[count] = out
	return sharded{count: count, keys: keys, recs: recs, ents: all[:out], starts: starts}
}

// tableSize is the length of the blob for es.
func (t *sharded) tableSize(es []tabEnt) int {
	n := 4 + 4*len(es)
	for _, e := range es {
		n += 2 + e.key.n + e.rec.n
	}
	return n
}

// appendTable appends the sorted-table blob of es (sorted, keys distinct,
// each shorter than 64 KiB) to b.
func (t *sharded) appendTable(b []byte, es []tabEnt) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(es)))
	off := 4 + 4*len(es)
	for _, e := range es {
		b = binary.BigEndian.AppendUint32(b, uint32(off))
		off += 2 + e.key.n + e.rec.n
	}
	for _, e := range es {
		b = binary.BigEndian.AppendUint16(b, uint16(e.key.n))
		b = append(b, e.key.of(t.keys)...)
		b = append(b, e.rec.of(t.recs)...)
	}
	return b
}

// tableFind looks key up in a sorted-table blob. It returns the record's
// bounds in blob, found, and ok false when the blob is damaged (the
// entries the search visits run outside it or out of order): it never
// reads outside blob.
func tableFind(blob []byte, key string) (start, end int, found, ok bool) {
	if len(blob) < 4 {
		return 0, 0, false, false
	}
	n := int(binary.BigEndian.Uint32(blob))
	if n > (len(blob)-4)/4 {
		return 0, 0, false, false
	}
	first := 4 + 4*n
	lo, hi := 0, n
	for lo < hi {
		i := int(uint(lo+hi) >> 1)
		s := int(binary.BigEndian.Uint32(blob[4+4*i:]))
		e := len(blob)
		if i+1 < n {
			e = int(binary.BigEndian.Uint32(blob[4+4*(i+1):]))
		}
		if s < first || s > e || e > len(blob) || e-s < 2 {
			return 0, 0, false, false
		}
		kl := int(binary.BigEndian.Uint16(blob[s:]))
		if kl > e-s-2 {
			return 0, 0, false, false
		}
		k := blob[s+2 : s+2+kl]
		switch c := compareKey(k, key); {
		case c == 0:
			return s + 2 + kl, e, true, true
		case c < 0:
			lo = i + 1
		default:
			hi = i
		}
	}
	return 0, 0, false, true
}

// compareKey compares a stored key with key as bytes.Compare would.
func compareKey(k []byte, key string) int {
	n := min(len(k), len(key))
	for i := 0; i < n; i++ {
		if k[i] != key[i] {
			if k[i] < key[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(k) < len(key):
		return -1
	case len(k) > len(key):
		return 1
	}
	return 0
}

// linesFind returns the bounds of line l's text in a "lines" blob of
// linesPerShard lines; found is false for a line not stored, ok false
// for a damaged blob. It never reads outside blob.
func linesFind(blob []byte, l int) (start, end int, found, ok bool) {
	if len(blob) < 4*(linesPerShard+1) || l < 0 {
		return 0, 0, false, false
	}
	i := l % linesPerShard
	s := int(binary.BigEndian.Uint32(blob[4*i:]))
	e := int(binary.BigEndian.Uint32(blob[4*(i+1):]))
	if s < 4*(linesPerShard+1) || s > e || e > len(blob) {
		return 0, 0, false, false
	}
	return s, e, s < e, true
}

// appendLines appends the "lines" blob for the lines of one shard to b:
// texts[i] is line base+i, empty for one not stored.
func appendLines(b []byte, texts *[linesPerShard][]byte) []byte {
	off := 4 * (linesPerShard + 1)
	for _, t := range texts {
		b = binary.BigEndian.AppendUint32(b, uint32(off))
		off += len(t)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(off))
	for _, t := range texts {
		b = append(b, t...)
	}
	return b
}
