package acl

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// Cache answers lookups from the database at Path, kept open between
// them. tcpserver opens its cdb for every connection so that a new rule
// set counts from the next connection; Cache keeps that promise with a
// stat a lookup instead of an open: gw-tcprules never changes a database
// in place but renames a new file over it, so a different file (or, should
// someone copy over it, a different size or time) means new rules, and
// the new file is opened for this lookup and those after it. The zero
// value with Path set is ready; it is safe for concurrent use.
type Cache struct {
	Path string

	mu sync.RWMutex
	db *DB
	id fileID
}

// fileID tells one version of the database file from another.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func identify(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// Lookup answers for client r from the rules in force now.
func (c *Cache) Lookup(r Remote) (Decision, error) {
	fi, err := os.Stat(c.Path)
	if err != nil {
		return Decision{}, err
	}
	id := identify(fi)
	c.mu.RLock()
	if c.db != nil && c.id == id {
		defer c.mu.RUnlock()
		return c.db.Lookup(r)
	}
	c.mu.RUnlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil || c.id != id {
		db, err := Open(c.Path)
		if err != nil {
			return Decision{}, err
		}
		if c.db != nil {
			c.db.Close() // no lookup holds it: they hold the read lock
		}
		c.db, c.id = db, id
	}
	return c.db.Lookup(r)
}

// Close closes the database kept open, if any.
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
