package state

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"gw/lib/logline"
)

// Redis is a Store shared by every host that names the same server and
// prefix. Each operation is one Lua script or one command, so it is
// atomic on the server: two hosts counting one client at once both see
// the count go up by one. Timings come from the server's clock (TIME),
// not the hosts', so hosts whose clocks differ still agree on windows
// and greylist delays.
type Redis struct {
	Prefix string // prepended to every key: one group of hosts shares it
	Log    *logline.Logger

	c    *redis.Client
	down atomic.Bool
}

// The operations are short; a server that does not answer in this time
// is taken as down, so a session waits at most this long per check
// before its function falls back to its rule.
const redisTimeout = 500 * time.Millisecond

// OpenRedis connects to the server of a redis:// or rediss:// URL (no
// password in it: see Load). Nothing is sent until the first operation.
func OpenRedis(url, password, prefix string, log *logline.Logger) (*Redis, error) {
	return OpenRedisTLS(url, password, prefix, nil, log)
}

// OpenRedisTLS is OpenRedis whose rediss:// server certificate is
// verified against roots (nil: the system's roots) for the URL's host.
func OpenRedisTLS(url, password, prefix string, roots *x509.CertPool, log *logline.Logger) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("statebackend %q: %w", url, err)
	}
	if roots != nil {
		if opt.TLSConfig == nil {
			return nil, fmt.Errorf("statebackend %q: a CA file is for rediss:// only", url)
		}
		opt.TLSConfig.RootCAs = roots
	}
	if opt.Password != "" {
		return nil, errors.New("statebackend: a password in the URL would be readable by all; put it in control/statebackendpassword")
	}
	opt.Password = password
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
	opt.MaxRetries = -1   // a retry doubles the wait of every session while the server is down
	opt.DialerRetries = 1 // the same: one refused dial says the server is down
	opt.PoolSize = 16
	redis.SetLogger(quiet{})
	opt.DisableIdentity = true
	return &Redis{Prefix: prefix, Log: log, c: redis.NewClient(opt)}, nil
}

var countScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// Count implements Store. The window's end is computed from the key's
// time to live on the server.
func (r *Redis) Count(key string, window time.Duration) (int64, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	v, err := countScript.Run(ctx, r.c, []string{r.Prefix + key}, window.Milliseconds()).Int64Slice()
	if err = r.health(err); err != nil {
		return 0, time.Time{}, err
	}
	if len(v) != 2 {
		return 0, time.Time{}, fmt.Errorf("statebackend: count answered %d values", len(v))
	}
	return v[0], time.Now().Add(time.Duration(v[1]) * time.Millisecond), nil
}

// Get implements Store.
func (r *Redis) Get(key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	b, err := r.c.Get(ctx, r.Prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		r.health(nil)
		return nil, false, nil
	}
	if err = r.health(err); err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// Put implements Store.
func (r *Redis) Put(key string, val []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	return r.health(r.c.Set(ctx, r.Prefix+key, val, ttl).Err())
}

var greylistScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local now = tonumber(redis.call('TIME')[1])
local first = redis.call('GET', KEYS[2])
if not first then
	redis.call('SET', KEYS[2], now, 'EX', ARGV[2])
	return 0
end
if now - tonumber(first) < tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], now, 'EX', ARGV[3])
return 1
`)

// Greylist is lib/greylist's check as one atomic step: the client
// network passes while whitelisted; a triplet's first try is stamped
// with the server's time and expires after expiry; a retry after delay
// passes and whitelists the network.
func (r *Redis) Greylist(network, triplet string, delay, expiry, whitelist time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	keys := []string{r.Prefix + "gl:c:" + network, r.Prefix + "gl:t:" + triplet}
	secs := func(d time.Duration) string { return strconv.FormatInt(max(int64(d/time.Second), 1), 10) }
	n, err := greylistScript.Run(ctx, r.c, keys, secs(delay), secs(expiry), secs(whitelist)).Int()
	if err = r.health(err); err != nil {
		return false, err
	}
	return n == 1, nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.c.Close() }

// health turns a failure to reach the server into ErrDown and logs the
// alert line once when the server goes away and once when it is back, so
// a dead server is one line in the log, not one a session.
func (r *Redis) health(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		if r.down.Swap(false) && r.Log != nil {
			r.Log.Info("statebackend", "state", "up", "backend", "redis")
		}
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return fmt.Errorf("statebackend: %w", err) // the server answered: not down
	}
	if !r.down.Swap(true) && r.Log != nil {
		r.Log.Alert("statebackend", "state", "down", "backend", "redis", "err", err)
	}
	return fmt.Errorf("%w: %v", ErrDown, err)
}

// quiet drops the client library's own log lines: they would repeat, once
// an operation, what health says once a state change, and not in gw's
// key=value form.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
