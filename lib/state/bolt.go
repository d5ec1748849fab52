package state

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gw/lib/trustpath"
)

// Bolt is a Store in a bbolt file of the host (state/smtpd/rates-FACE.db by
// convention): the rate counts and bans of a listener that names no
// shared server, and what limits fall back to when that server is down.
// Unlike Memory it outlives the process, so under tcpserver, one process
// a connection, a client's counts add up across its sessions.
//
// bbolt allows one writing process: each operation opens the file with a
// short lock timeout, does one read-write transaction and closes it
// again, unless Keep (a standalone listener, the file's one writer). A
// lock not had in time is an error: the limiter then counts in memory and
// logs it, rather than stalling the session (gw-state(5)).
type Bolt struct {
	Path string
	Keep bool
	Now  func() time.Time // nil: time.Now

	mu sync.Mutex
	db *bolt.DB
}

// BoltLockTimeout is how long an operation waits for the file's lock.
const BoltLockTimeout = 200 * time.Millisecond

var (
	bucketCounts = []byte("counts")
	bucketVals   = []byte("values")
)

// boltSweepOneIn: one write in this many also removes what has expired,
// so the file stays bounded by the clients of one window.
const boltSweepOneIn = 1024

func (b *Bolt) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// update runs fn in one read-write transaction on the file.
func (b *Bolt) update(fn func(tx *bolt.Tx) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		db, err := bolt.Open(b.Path, 0o600, &bolt.Options{OpenFile: trustpath.OpenOwned, Timeout: BoltLockTimeout})
		if err != nil {
			return fmt.Errorf("state %s: %w", b.Path, err)
		}
		b.db = db
	}
	if !b.Keep {
		defer func() { b.db.Close(); b.db = nil }()
	}
	if err := b.db.Update(fn); err != nil {
		return fmt.Errorf("state %s: %w", b.Path, err)
	}
	return nil
}

// A counter is 16 bytes: the count, then the window's end in Unix
// nanoseconds, both big-endian. Anything else (a damaged or foreign
// file) starts a new window.
func decodeCount(v []byte) (n int64, end time.Time, ok bool) {
	if len(v) != 16 {
		return 0, time.Time{}, false
	}
	n = int64(binary.BigEndian.Uint64(v))
	end = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
	return n, end, n > 0 && n < 1<<62 // room to add to
}

func encodeCount(n int64, end time.Time) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(n))
	binary.BigEndian.PutUint64(v[8:], uint64(end.UnixNano()))
	return v
}

// Count implements Store: a fixed window from the key's first count, as
// Memory and Redis count, timed by this host's clock.
func (b *Bolt) Count(key string, d time.Duration) (int64, time.Time, error) {
	var n int64
	var end time.Time
	err := b.update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketCounts)
		if err != nil {
			return err
		}
		now := b.now()
		if rand.IntN(boltSweepOneIn) == 0 {
			sweepBucket(bk, now, func(v []byte) time.Time { _, e, _ := decodeCount(v); return e })
		}
		c, e, ok := decodeCount(bk.Get([]byte(key)))
		if !ok || !now.Before(e) || e.After(now.Add(d)) {
			// A window ending past now+d was not written by this
			// rule: distrust it rather than let it block for long.
			c, e = 0, now.Add(d)
		}
		n, end = c+1, e
		return bk.Put([]byte(key), encodeCount(n, end))
	})
	return n, end, err
}

// A value is its end in Unix nanoseconds (8 bytes), then its bytes.
func valueEnd(v []byte) time.Time {
	if len(v) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
}

// Get implements Store. It takes the write lock too: bbolt's readers
// share the file's lock with no writer, and one short transaction is
// cheaper than telling the two apart.
func (b *Bolt) Get(key string) ([]byte, bool, error) {
	var val []byte
	var found bool
	err := b.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketVals)
		if bk == nil {
			return nil
		}
		v := bk.Get([]byte(key))
		if len(v) < 8 || !b.now().Before(valueEnd(v)) {
			return nil
		}
		val, found = append([]byte(nil), v[8:]...), true
		return nil
	})
	return val, found, err
}

// Put implements Store.
func (b *Bolt) Put(key string, val []byte, ttl time.Duration) error {
	return b.update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketVals)
		if err != nil {
			return err
		}
		now := b.now()
		if rand.IntN(boltSweepOneIn) == 0 {
			sweepBucket(bk, now, valueEnd)
		}
		v := make([]byte, 8, 8+len(val))
		binary.BigEndian.PutUint64(v, uint64(now.Add(ttl).UnixNano()))
		return bk.Put([]byte(key), append(v, val...))
	})
}

// Close implements Store.
func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db = nil
	return err
}

func sweepBucket(bk *bolt.Bucket, now time.Time, end func([]byte) time.Time) {
	var old [][]byte
	bk.ForEach(func(k, v []byte) error {
		if !now.Before(end(v)) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range old {
		bk.Delete(k)
	}
}
