package tests

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// readCDB returns every key of the CDB file tcprules wrote with the data
// of its first record, which is the one a CDB lookup returns. The format
// is djb's: a 2048-byte table of (position, length) pairs, then the
// records (key length, data length, both 4 bytes little-endian, key,
// data) up to the first hash table.
func readCDB(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2048 {
		t.Fatalf("%s: %d bytes, too short for a CDB", path, len(b))
	}
	end := binary.LittleEndian.Uint32(b)
	out := map[string]string{}
	for p := uint32(2048); p < end; {
		if int(p)+8 > len(b) {
			t.Fatalf("%s: record at %d runs past the end", path, p)
		}
		kl := binary.LittleEndian.Uint32(b[p:])
		dl := binary.LittleEndian.Uint32(b[p+4:])
		k := string(b[p+8 : p+8+kl])
		if _, dup := out[k]; !dup {
			out[k] = string(b[p+8+kl : p+8+kl+dl])
		}
		p += 8 + kl + dl
	}
	return out
}

// readGWKeys returns the tcprules keys of a gw-tcprules database with the
// tcprules data of their records, read as gw-tcprules(5) describes the
// layout: bucket "keys", one entry a shard, each value a sorted table
// (a count, that many 4-byte offsets, then entries of a 2-byte key
// length, the key and the record), each record a 4-byte line number then
// tcprules' data bytes; every key must sit in the shard its FNV-1a hash
// names. Reading it here with bare bbolt keeps the manual page honest.
func readGWKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if v := meta.Get([]byte("version")); string(v) != "gw-tcprules 2" {
			return fmt.Errorf("meta version %q", v)
		}
		sv := meta.Get([]byte("keyshards"))
		if len(sv) != 4 {
			return fmt.Errorf("meta keyshards %q", sv)
		}
		shards := binary.BigEndian.Uint32(sv)
		if shards == 0 || shards&(shards-1) != 0 {
			return fmt.Errorf("shard count %d is not a power of two", shards)
		}
		return tx.Bucket([]byte("keys")).ForEach(func(k, v []byte) error {
			if len(k) != 4 || binary.BigEndian.Uint32(k) >= shards || len(v) < 4 {
				return fmt.Errorf("bad shard %q -> %q", k, v)
			}
			shard := binary.BigEndian.Uint32(k)
			n := int(binary.BigEndian.Uint32(v))
			if 4+4*n > len(v) {
				return fmt.Errorf("shard %d: %d entries in %d bytes", shard, n, len(v))
			}
			prev := ""
			for i := 0; i < n; i++ {
				s, e := int(binary.BigEndian.Uint32(v[4+4*i:])), len(v)
				if i+1 < n {
					e = int(binary.BigEndian.Uint32(v[4+4*(i+1):]))
				}
				if s < 4+4*n || s+2 > e || e > len(v) {
					return fmt.Errorf("shard %d entry %d: bad bounds %d-%d", shard, i, s, e)
				}
				kl := int(binary.BigEndian.Uint16(v[s:]))
				if s+2+kl+4 > e {
					return fmt.Errorf("shard %d entry %d: key length %d", shard, i, kl)
				}
				key := string(v[s+2 : s+2+kl])
				if i > 0 && key <= prev {
					return fmt.Errorf("shard %d: key %q after %q", shard, key, prev)
				}
				h := uint32(2166136261)
				for j := 0; j < len(key); j++ {
					h = (h ^ uint32(key[j])) * 16777619
				}
				if h&(shards-1) != shard {
					return fmt.Errorf("key %q in shard %d, hashes to %d", key, shard, h&(shards-1))
				}
				prev = key
				out[key] = string(v[s+2+kl+4 : e])
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}
