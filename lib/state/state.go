// Package state keeps the small policy state that several gw hosts of one
// site must agree on: rate-limit counters, the ban list, callout answers
// and greylist triplets. A Store is either local to the host (Memory,
// Bolt) or shared by every host that names the same Redis or Valkey
// server (Redis), chosen by control/statebackend (gw-state(5)).
//
// Every operation is one atomic step on the store, so two hosts counting
// the same client never double-count or lose a count. When a shared store
// cannot be reached, each caller follows its own documented rule
// (gw-state(5)): greylisting accepts, limits count locally, callouts skip
// the cache; the store only reports the error and logs the alert line.
package state

import (
	"errors"
	"time"
)

// Store is a backend for policy state.
type Store interface {
	// Count adds one to key's counter and returns the count in the
	// current window and when that window ends. A window starts with
	// the first count of a key and lasts window (a fixed window, as
	// Postfix's anvil counts).
	Count(key string, window time.Duration) (n int64, reset time.Time, err error)
	// Get returns key's value, if it is set and not expired.
	Get(key string) ([]byte, bool, error)
	// Put sets key to val for ttl.
	Put(key string, val []byte, ttl time.Duration) error
	// Close releases the store.
	Close() error
}

// ErrDown wraps every error of a shared store that could not be reached,
// so callers can tell "the store is down" from "the store said no".
var ErrDown = errors.New("state backend unreachable")
