package acl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Remote is what a listener knows about its client, as tcpserver puts it
// into TCPREMOTEIP, TCPREMOTEHOST and TCPREMOTEINFO.
type Remote struct {
	IP      string // the address as text: dotted IPv4, compressed IPv6
	Host    string // the client's name, lower case; only if HasHost
	HasHost bool   // false when TCPREMOTEHOST would be unset
	Info    string // the ident answer; only if HasInfo
	HasInfo bool   // false when TCPREMOTEINFO would be unset
}

// Decision is the answer for one client.
type Decision struct {
	Found bool   // false: no rule matched, so allow with no changes
	Key   string // the key that matched, as tcprulescheck prints it
	Line  int    // the rules line that decided, when Found
	Text  string // that line as written, when the database has it
	Deny  bool
	// Env holds the rule's "NAME=VALUE" items in the order written; they
	// are applied in order, so for a name set twice the last one wins.
	// An item without "=" (only a NUL inside a quoted value makes one) is
	// skipped by tcpserver; Assignments does the same.
	Env []string
}

// Assignments returns d's environment items split at their first "=",
// skipping items without one, in the order they are to be applied.
func (d Decision) Assignments() [][2]string {
	var out [][2]string
	for _, item := range d.Env {
		if name, value, ok := strings.Cut(item, "="); ok {
			out = append(out, [2]string{name, value})
		}
	}
	return out
}

// Probe is one key tried during a lookup, for --explain.
type Probe struct {
	Key   string
	Found bool
	Line  int
}

// DB is an open rules database.
type DB struct {
	bolt *bolt.DB
	// From bucket "meta", read once: the file never changes in place.
	keyShards, cidrShards uint32
	cidr4, cidr6          []byte
}

// readLockWait is how long Open waits for bbolt's shared lock: not at
// all. Anyone who may open the file can hold an exclusive flock on it, and
// a listener that waited would make every new client wait behind it; a
// timeout under bbolt's 50 ms retry step means one try.
const readLockWait = time.Millisecond

// ErrLocked is returned by Open when another process holds an exclusive
// lock on the database: the rules cannot be read now (a temporary
// failure; gw-tcprules never locks the file it renames into place).
var ErrLocked = errors.New("locked by another process")

// ErrNotRules is returned by Open for a file that is not a gw-tcprules
// database of this layout.
var ErrNotRules = errors.New("not a gw-tcprules database (or one of another layout version)")

// Open opens the compiled rules at path read-only. A reader keeps the
// file it opened even while gw-tcprules replaces it; listeners look up
// through a Cache, which notices the replacement at the next connection.
func Open(path string) (*DB, error) {
	// Fail at once on a missing file: bbolt read-only would wait or create.
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	b, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: readLockWait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, err
	}
	db := &DB{bolt: b}
	err = b.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(metaVersion)) != layoutVersion ||
			tx.Bucket(bucketKeys) == nil || tx.Bucket(bucketCIDR) == nil || tx.Bucket(bucketLines) == nil {
			return ErrNotRules
		}
		var ok1, ok2 bool
		db.keyShards, ok1 = shardCountOf(meta.Get(metaKeyShards))
		db.cidrShards, ok2 = shardCountOf(meta.Get(metaCIDRShards))
		if !ok1 || !ok2 || string(meta.Get(metaLinesPer)) != string(binary.BigEndian.AppendUint32(nil, linesPerShard)) {
			return ErrNotRules
		}
		db.cidr4 = slices.Clone(meta.Get(metaCIDR4))
		db.cidr6 = slices.Clone(meta.Get(metaCIDR6))
		return nil
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return db, nil
}

// shardCountOf reads a stored shard count: 4 bytes, a power of two.
func shardCountOf(v []byte) (uint32, bool) {
	if len(v) != 4 {
		return 0, false
	}
	n := binary.BigEndian.Uint32(v)
	return n, n != 0 && n&(n-1) == 0
}

// Close closes the database.
func (db *DB) Close() error { return db.bolt.Close() }

// Lookup answers for client r in tcpserver's order; see LookupTrace.
func (db *DB) Lookup(r Remote) (Decision, error) {
	return db.LookupTrace(r, nil)
}

// LookupTrace answers for client r, calling trace (if not nil) for every
// key tried. The order is tcpserver's: info@ip, info@=host, ip, =host,
// then the dotted prefixes of ip (colon prefixes too, for IPv6) together
// with the CIDR prefixes in use, longest first, then =.suffix for each dot
// of host from the left, "=" when a host is known, and the empty key.
func (db *DB) LookupTrace(r Remote, trace func(Probe)) (Decision, error) {
	var d Decision
	err := db.bolt.View(func(tx *bolt.Tx) error {
		l := &lookup{db: db, keys: tx.Bucket(bucketKeys), cidr: tx.Bucket(bucketCIDR), trace: trace}
		var ok bool
		d, ok = l.run(r)
		if ok && d.Found {
			var text []byte
			text, ok = lineText(tx.Bucket(bucketLines), d.Line)
			d.Text = string(text)
		}
		if !ok {
			return fmt.Errorf("damaged record in the rules database")
		}
		return nil
	})
	return d, err
}

type lookup struct {
	db    *DB
	keys  *bolt.Bucket
	cidr  *bolt.Bucket
	trace func(Probe)
	bad   bool // a record did not decode
}

// found is a probe's result.
type found struct {
	key string
	rec record
}

func (l *lookup) probe(key string) (found, bool) {
	return l.get(key, l.fetch(l.keys, l.db.keyShards, key))
}

func (l *lookup) probeCIDR(p netip.Prefix) (found, bool) {
	var b [18]byte
	k := appendCIDRKey(b[:0], p)
	v := l.fetch(l.cidr, l.db.cidrShards, string(k))
	if v == nil {
		if l.trace != nil {
			l.trace(Probe{Key: p.String()})
		}
		return found{}, false
	}
	return l.get(p.String(), v)
}

// fetch returns key's record from its shard in bucket bk, nil if absent.
func (l *lookup) fetch(bk *bolt.Bucket, shards uint32, key string) []byte {
	var sk [4]byte
	binary.BigEndian.PutUint32(sk[:], fnv32a(key)&(shards-1))
	blob := bk.Get(sk[:])
	if blob == nil {
		return nil
	}
	s, e, found, ok := tableFind(blob, key)
	if !ok {
		l.bad = true
	}
	if !found {
		return nil
	}
	return blob[s:e:e]
}

// lineText returns the text of line n from bucket "lines"; ok is false
// for a damaged blob.
func lineText(lines *bolt.Bucket, n int) (text []byte, ok bool) {
	var sk [4]byte
	binary.BigEndian.PutUint32(sk[:], uint32(n/linesPerShard))
	blob := lines.Get(sk[:])
	if blob == nil {
		return nil, true
	}
	s, e, _, ok := linesFind(blob, n)
	if !ok {
		return nil, false
	}
	return blob[s:e], true
}

func (l *lookup) get(key string, v []byte) (found, bool) {
	if v == nil {
		if l.trace != nil {
			l.trace(Probe{Key: key})
		}
		return found{}, false
	}
	rec, ok := decodeRecord(v)
	if !ok {
		l.bad = true
	}
	if l.trace != nil {
		l.trace(Probe{Key: key, Found: true, Line: rec.line})
	}
	return found{key: key, rec: rec}, true
}

func (l *lookup) run(r Remote) (Decision, bool) {
	f, ok := l.find(r)
	if !ok {
		return Decision{}, !l.bad
	}
	return Decision{Found: true, Key: f.key, Line: f.rec.line, Deny: f.rec.deny, Env: f.rec.env}, !l.bad
}

func (l *lookup) find(r Remote) (found, bool) {
	ip := r.IP
	if r.HasInfo {
		if f, ok := l.probe(r.Info + "@" + ip); ok {
			return f, true
		}
		if r.HasHost {
			if f, ok := l.probe(r.Info + "@=" + r.Host); ok {
				return f, true
			}
		}
	}
	if f, ok := l.probe(ip); ok {
		return f, true
	}
	if r.HasHost {
		if f, ok := l.probe("=" + r.Host); ok {
			return f, true
		}
	}
	if f, ok := l.prefixes(ip); ok {
		return f, true
	}
	if r.HasHost {
		for i := 0; i < len(r.Host); i++ {
			if r.Host[i] == '.' {
				if f, ok := l.probe("=" + r.Host[i:]); ok {
					return f, true
				}
			}
		}
		if f, ok := l.probe("="); ok {
			return f, true
		}
	}
	return l.probe("")
}

// prefixes tries the textual prefixes of ip that end in "." or ":",
// longest first, merged with the CIDR prefixes of the lengths in use.
// A textual prefix counts 8 bits for each "." and 16 for each ":" that
// closes a non-empty group, so "10.1." is as long as a /16 and
// "2001:db8:" as a /32. At equal length the textual prefixes keep their
// own order among themselves, and between the first of them found and
// the CIDR rule the earlier rules line wins, as for duplicate addresses.
func (l *lookup) prefixes(ip string) (found, bool) {
	type text struct {
		key  string
		bits int
	}
	var texts []text
	for n := len(ip); n > 0; n-- {
		if c := ip[n-1]; c == '.' || c == ':' {
			texts = append(texts, text{ip[:n], prefixBits(ip[:n])})
		}
	}
	addr, cidrLens := l.cidrLengths(ip)
	i, j := 0, 0
	for i < len(texts) || j < len(cidrLens) {
		bits := -1
		if i < len(texts) {
			bits = texts[i].bits
		}
		if j < len(cidrLens) && cidrLens[j] > bits {
			bits = cidrLens[j]
		}
		var best found
		var got bool
		for ; i < len(texts) && texts[i].bits == bits; i++ {
			if got {
				continue
			}
			best, got = l.probe(texts[i].key)
		}
		if j < len(cidrLens) && cidrLens[j] == bits {
			p, _ := addr.Prefix(bits)
			if f, ok := l.probeCIDR(p); ok && (!got || f.rec.line < best.rec.line) {
				best, got = f, true
			}
			j++
		}
		if got {
			return best, true
		}
	}
	return found{}, false
}

// cidrLengths returns ip parsed and the CIDR lengths in use for its
// family, longest first; none when ip is not an address.
func (l *lookup) cidrLengths(ip string) (netip.Addr, []int) {
	lens4, lens6 := l.db.cidr4, l.db.cidr6
	if len(lens4) == 0 && len(lens6) == 0 {
		return netip.Addr{}, nil
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, nil
	}
	lens := lens6
	if addr.Is4() {
		lens = lens4
	}
	out := make([]int, 0, len(lens))
	for _, b := range lens {
		if int(b) <= addr.BitLen() {
			out = append(out, int(b))
		}
	}
	return addr, out
}

// prefixBits is the length a textual prefix counts for: 8 bits for each
// "." and 16 for each ":" that ends a non-empty group.
func prefixBits(p string) int {
	bits := 0
	for i := 0; i < len(p); i++ {
		if i == 0 || p[i-1] == '.' || p[i-1] == ':' {
			continue
		}
		switch p[i] {
		case '.':
			bits += 8
		case ':':
			bits += 16
		}
	}
	return bits
}

// Format returns d as tcprulescheck prints it, byte for byte.
func (d Decision) Format() string {
	if !d.Found {
		return "default:\nallow connection\n"
	}
	var b strings.Builder
	b.WriteString("rule " + d.Key + ":\n")
	for _, item := range d.Env {
		b.WriteString("set environment variable " + item + "\n")
	}
	if d.Deny {
		b.WriteString("deny connection\n")
	} else {
		b.WriteString("allow connection\n")
	}
	return b.String()
}

// Explain returns the closing lines of gw-tcprulescheck --explain: which
// rules line decided, or that none did.
func Explain(d Decision) string {
	if !d.Found {
		return "no rule matched: allowed, environment unchanged\n"
	}
	return fmt.Sprintf("decided by line %d: %s\n", d.Line, quoteLine(d.Text))
}

// RemoteIP returns addr as the text tcpserver puts in TCPREMOTEIP and the
// rules are written against: dotted IPv4, also for an IPv4 client on an
// IPv6 socket, and compressed lower-case IPv6 without a zone.
// XXX: RFC 5952 text (Go's) leaves a single zero group uncompressed; the
// IPv6 tcpserver's formatter has not been checked on that case.
func RemoteIP(addr netip.Addr) string {
	return addr.Unmap().WithZone("").String()
}
