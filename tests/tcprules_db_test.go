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
// layout: bucket "keys", each key after a 'k', each value a 4-byte line
// number then tcprules' data bytes. Reading it here with bare bbolt keeps
// the manual page honest.
func readGWKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("version")); string(v) != "gw-tcprules 1" {
			return fmt.Errorf("meta version %q", v)
		}
		return tx.Bucket([]byte("keys")).ForEach(func(k, v []byte) error {
			if len(k) < 1 || k[0] != 'k' || len(v) < 4 {
				return fmt.Errorf("bad entry %q -> %q", k, v)
			}
			out[string(k[1:])] = string(v[4:])
			return nil
		})
	})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}
