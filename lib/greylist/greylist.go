// Package greylist delays first mail from untrusted clients: a triplet
// (client network, sender, recipient) seen for the first time is refused
// with a temporary error; the same triplet retried after Delay, within
// Expiry of its first try, passes, and its client network then passes
// everything for Whitelist (auto-whitelisting of clients that retry, as
// postgrey does). Networks are the client's /24 (IPv4) or /64 (IPv6), so
// senders that retry from another host of their pool still pass.
//
// The triplets live in a bbolt file (state/smtpd/greylist.db by convention).
// bbolt allows one writing process: every check opens the file with a
// lock Timeout and, unless Keep is set (a long-running listener, which is
// then that one writer), closes it again, so tcpserver's one process a
// connection take turns.
package greylist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gw/lib/control"
	"gw/lib/state"
	"gw/lib/trustpath"
)

// Defaults of the control files (seconds), documented in gw-smtpd(8).
const (
	DefaultDelay     = 300         // greylistdelay
	DefaultExpiry    = 2 * 86400   // greylistexpiry: how long a first try waits for its retry
	DefaultWhitelist = 35 * 86400  // greylistwhitelist: how long a network that retried passes
	lockTimeout      = time.Second // bbolt's file lock; past it the check fails open
	sweepOneIn       = 1000        // one check in this many removes expired records
)

var (
	bucketTriplets = []byte("triplets")
	bucketClients  = []byte("clients")
)

// List is a greylist database with its timings.
type List struct {
	Path                     string
	Delay, Expiry, Whitelist time.Duration
	Keep                     bool // keep the file open between checks
	Now                      func() time.Time
	// Shared, when set, holds the triplets instead of the file, for
	// every host that names it (control/statebackend); its clock, not
	// Now, times the delays. When it is down, Check returns its error
	// and the listener accepts (gw-state(5)).
	Shared *state.Redis

	mu sync.Mutex
	db *bolt.DB
}

// Load returns the list at path with the timings of dir's control files.
func Load(dir control.Dir, path string) (*List, error) {
	l := &List{Path: path, Now: time.Now}
	for _, s := range []struct {
		name string
		def  int64
		to   *time.Duration
	}{{"greylistdelay", DefaultDelay, &l.Delay}, {"greylistexpiry", DefaultExpiry, &l.Expiry}, {"greylistwhitelist", DefaultWhitelist, &l.Whitelist}} {
		v, err := dir.Int(s.name, s.def)
		if err != nil {
			return nil, err
		}
		*s.to = time.Duration(v) * time.Second
	}
	return l, nil
}

// SetTimings takes Delay, Expiry and Whitelist from o (control files read
// again) for the checks from now on.
func (l *List) SetTimings(o *List) {
	if o == l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Delay, l.Expiry, l.Whitelist = o.Delay, o.Expiry, o.Whitelist
}

// Network returns the part of ip that greylisting keys on.
func Network(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// Check reports whether the triplet may pass now, and records it.
func (l *List) Check(ip, from, rcpt string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Shared != nil {
		net := Network(ip)
		return l.Shared.Greylist(net, net+"\x00"+strings.ToLower(from)+"\x00"+strings.ToLower(rcpt), l.Delay, l.Expiry, l.Whitelist)
	}
	if l.db == nil {
		db, err := bolt.Open(l.Path, 0o600, &bolt.Options{OpenFile: trustpath.OpenOwned, Timeout: lockTimeout})
		if err != nil {
			return false, fmt.Errorf("greylist %s: %w", l.Path, err)
		}
		l.db = db
	}
	if !l.Keep {
		defer func() { l.db.Close(); l.db = nil }()
	}
	now := l.Now()
	net := Network(ip)
	key := []byte(net + "\x00" + strings.ToLower(from) + "\x00" + strings.ToLower(rcpt))
	pass := false
	err := l.db.Update(func(tx *bolt.Tx) error {
		trip, err := tx.CreateBucketIfNotExists(bucketTriplets)
		if err != nil {
			return err
		}
		clients, err := tx.CreateBucketIfNotExists(bucketClients)
		if err != nil {
			return err
		}
		if rand.IntN(sweepOneIn) == 0 {
			sweep(trip, clients, now, l.Expiry)
		}
		if until, ok := unix(clients.Get([]byte(net))); ok && now.Before(until) {
			pass = true
			return nil
		}
		first, ok := unix(trip.Get(key))
		if !ok || now.Sub(first) > l.Expiry {
			return trip.Put(key, stamp(now))
		}
		if now.Sub(first) < l.Delay {
			return nil
		}
		pass = true
		trip.Delete(key)
		return clients.Put([]byte(net), stamp(now.Add(l.Whitelist)))
	})
	if err != nil {
		return false, fmt.Errorf("greylist %s: %w", l.Path, err)
	}
	return pass, nil
}

// sweep removes first tries older than expiry and lapsed whitelistings.
func sweep(trip, clients *bolt.Bucket, now time.Time, expiry time.Duration) {
	var old [][]byte
	trip.ForEach(func(k, v []byte) error {
		if t, ok := unix(v); !ok || now.Sub(t) > expiry {
			old = append(old, k)
		}
		return nil
	})
	for _, k := range old {
		trip.Delete(k)
	}
	old = old[:0]
	clients.ForEach(func(k, v []byte) error {
		if t, ok := unix(v); !ok || now.After(t) {
			old = append(old, k)
		}
		return nil
	})
	for _, k := range old {
		clients.Delete(k)
	}
}

// Close closes a kept-open database.
func (l *List) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.db == nil {
		return nil
	}
	err := l.db.Close()
	l.db = nil
	return err
}

func stamp(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.Unix())) }

func unix(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), true
}

// Peek reports what Check would answer for the triplet now, and why, but
// writes nothing: gw-smtpd's session test asks it. The file is opened
// read-only; a listener that keeps it open (gw-smtpd --listen) holds it
// locked, and Peek then fails after its wait, saying so. Shared state
// is not asked: its check and its record are one step.
func (l *List) Peek(ip, from, rcpt string) (pass bool, why string, err error) {
	if l.Shared != nil {
		return false, "", fmt.Errorf("greylist: the shared state (control/statebackend) cannot be asked without recording")
	}
	if _, err := os.Stat(l.Path); errors.Is(err, os.ErrNotExist) {
		return false, "no triplet recorded yet: new, deferred", nil
	}
	db, err := bolt.Open(l.Path, 0o600, &bolt.Options{OpenFile: trustpath.OpenOwned, Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return false, "", fmt.Errorf("greylist %s: %w (a running listener keeps it locked)", l.Path, err)
	}
	defer db.Close()
	now := l.Now()
	net := Network(ip)
	key := []byte(net + "\x00" + strings.ToLower(from) + "\x00" + strings.ToLower(rcpt))
	err = db.View(func(tx *bolt.Tx) error {
		trip, clients := tx.Bucket(bucketTriplets), tx.Bucket(bucketClients)
		if clients != nil {
			if until, ok := unix(clients.Get([]byte(net))); ok && now.Before(until) {
				pass, why = true, "the client's network "+net+" is whitelisted until "+until.UTC().Format(time.RFC3339)
				return nil
			}
		}
		var first time.Time
		ok := false
		if trip != nil {
			first, ok = unix(trip.Get(key))
		}
		switch {
		case !ok || now.Sub(first) > l.Expiry:
			why = "new triplet: deferred, and recorded by a real session"
		case now.Sub(first) < l.Delay:
			why = fmt.Sprintf("first seen %s ago, delay %s: deferred", now.Sub(first).Round(time.Second), l.Delay)
		default:
			pass, why = true, fmt.Sprintf("first seen %s ago, past the delay %s: passes", now.Sub(first).Round(time.Second), l.Delay)
		}
		return nil
	})
	if err != nil {
		return false, "", fmt.Errorf("greylist %s: %w", l.Path, err)
	}
	return pass, why, nil
}
