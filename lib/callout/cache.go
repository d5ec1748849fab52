package callout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gw/lib/smtpd"
	"gw/lib/state"
	"gw/lib/trustpath"
)

// Cache keeps callout answers in a bbolt file (state/smtpd/callout.db by
// convention): key "domain\0local", value one verdict byte (storedExists,
// storedUnknown) and the expiry in Unix seconds.
//
// bbolt allows one writing process per file. A standalone gw-smtpd sets
// Keep and is that writer for as long as it runs. Under tcpserver, with a
// process a connection, nothing is kept open: a lookup opens the file
// read-only (a shared lock, so sessions read side by side) and an answer
// is stored by opening it for writing just for that transaction; the file
// is never held while a callout is under way. Every open waits at most
// lockTimeout for the lock; past it the cache is skipped and the host is
// asked (a cache failure costs a callout, never a wrong answer). Do not
// share one file between a standalone listener and tcpserver-run ones:
// the standalone one holds the write lock and the others would always
// miss.
//
// With Shared set (control/statebackend), answers live there instead,
// for every host of the group, under "co:" and the key, in the same
// encoding; when it is down, Get and Put fail and the callout is made
// without the cache (gw-state(5)).
type Cache struct {
	Path   string
	Keep   bool
	Shared state.Store

	mu sync.Mutex
	db *bolt.DB
}

const (
	lockTimeout = time.Second
	sweepOneIn  = 1000 // one store in this many removes expired records
)

var bucketAnswers = []byte("answers")

// The verdict bytes on disk, numbered here once and for all: the file
// outlives any build, and a verdict type of another package may be
// reordered. They are the values gw stored before they had names of
// their own (smtpd.Verdict's Exists and Unknown then), so those records
// read as they were written. Never renumber; add new values after them.
const (
	storedExists  byte = 1
	storedUnknown byte = 2
)

// storedByte returns the byte stored for v; only the final verdicts are
// stored.
func storedByte(v smtpd.Verdict) (byte, bool) {
	switch v {
	case smtpd.Exists:
		return storedExists, true
	case smtpd.Unknown:
		return storedUnknown, true
	}
	return 0, false
}

// Get returns the cached verdict for key, if there is one not expired.
func (c *Cache) Get(key string, now time.Time) (smtpd.Verdict, bool, error) {
	if c.Shared != nil {
		val, ok, err := c.Shared.Get("co:" + key)
		if err != nil || !ok {
			return 0, false, err
		}
		v, ok := decode(val, now) // another host wrote it: checked as from anyone
		return v, ok, nil
	}
	var v smtpd.Verdict
	var ok bool
	err := c.with(true, func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAnswers)
			if b == nil {
				return nil
			}
			v, ok = decode(b.Get([]byte(key)), now)
			return nil
		})
	})
	return v, ok, err
}

// Put stores verdict v for key until the given time; a verdict that is
// not final is not stored.
func (c *Cache) Put(key string, v smtpd.Verdict, until time.Time) error {
	stored, ok := storedByte(v)
	if !ok {
		return nil
	}
	if c.Shared != nil {
		ttl := time.Until(until)
		if ttl <= 0 {
			return nil
		}
		return c.Shared.Put("co:"+key, encode(stored, until), ttl)
	}
	return c.with(false, func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketAnswers)
			if err != nil {
				return err
			}
			if rand.IntN(sweepOneIn) == 0 {
				sweep(b, time.Now())
			}
			return b.Put([]byte(key), encode(stored, until))
		})
	})
}

// with runs fn on the database: the kept one, or one opened for fn alone
// (read-only when readOnly; a missing file then reads as empty).
func (c *Cache) with(readOnly bool, fn func(*bolt.DB) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Keep {
		if c.db == nil {
			db, err := bolt.Open(c.Path, 0o600, &bolt.Options{OpenFile: trustpath.OpenOwned, Timeout: lockTimeout})
			if err != nil {
				return fmt.Errorf("callout cache %s: %w", c.Path, err)
			}
			c.db = db
		}
		return wrap(c.Path, fn(c.db))
	}
	if readOnly {
		if _, err := os.Stat(c.Path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	db, err := bolt.Open(c.Path, 0o600, &bolt.Options{OpenFile: trustpath.OpenOwned, Timeout: lockTimeout, ReadOnly: readOnly})
	if err != nil {
		return fmt.Errorf("callout cache %s: %w", c.Path, err)
	}
	err = fn(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return wrap(c.Path, err)
}

func wrap(path string, err error) error {
	if err != nil {
		return fmt.Errorf("callout cache %s: %w", path, err)
	}
	return nil
}

// Close closes a kept-open database.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return nil
	}
	err := c.db.Close()
	c.db = nil
	return err
}

// encode is a stored value: the verdict's stored byte, then the expiry
// in Unix seconds (the same in the file and in the shared store).
func encode(stored byte, until time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{stored}, uint64(until.Unix()))
}

// decode returns the verdict of a stored value, if it is well formed and
// not expired. Only the two final verdicts are ever believed from disk.
func decode(val []byte, now time.Time) (smtpd.Verdict, bool) {
	if len(val) != 9 {
		return 0, false
	}
	var v smtpd.Verdict
	switch val[0] {
	case storedExists:
		v = smtpd.Exists
	case storedUnknown:
		v = smtpd.Unknown
	default:
		return 0, false
	}
	until := time.Unix(int64(binary.BigEndian.Uint64(val[1:])), 0)
	if !now.Before(until) {
		return 0, false
	}
	return v, true
}

func sweep(b *bolt.Bucket, now time.Time) {
	var old [][]byte
	b.ForEach(func(k, v []byte) error {
		if _, ok := decode(v, now); !ok {
			old = append(old, k)
		}
		return nil
	})
	for _, k := range old {
		b.Delete(k)
	}
}
