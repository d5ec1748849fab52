package acl

import (
	"encoding/binary"
	"net/netip"
)

// The database layout, documented for other readers in gw-tcprules(5).
// Changing any of it means a new layoutVersion.
//
//	bucket "meta"   "version"   -> layoutVersion
//	                "cidr4"     -> the IPv4 CIDR lengths in use, one byte each, longest first
//	                "cidr6"     -> the same for IPv6
//	                "keyshards" -> the shard count of "keys" (4 bytes, big-endian, a power of two)
//	                "cidrshards"-> the same for "cidr"
//	                "linesper"  -> the line numbers a "lines" blob covers (4 bytes, big-endian)
//	bucket "keys"   shard number (4 bytes, big-endian) -> sorted table of tcprules key -> record
//	bucket "cidr"   shard number -> sorted table of family (4 or 6), length,
//	                masked address (4 or 16 bytes) -> record
//	bucket "lines"  line number / linesper (4 bytes, big-endian) -> line table
//
// The shards, the sorted table and the line table are in shard.go. A
// record is the rules line number (4 bytes, big-endian) followed by
// tcprules' own data bytes: "D\0" first for a deny rule, then one
// "+NAME=VALUE\0" per assignment, in the order written; a bare allow has
// no data bytes.
var (
	bucketMeta  = []byte("meta")
	bucketKeys  = []byte("keys")
	bucketCIDR  = []byte("cidr")
	bucketLines = []byte("lines")

	metaVersion    = []byte("version")
	metaCIDR4      = []byte("cidr4")
	metaCIDR6      = []byte("cidr6")
	metaKeyShards  = []byte("keyshards")
	metaCIDRShards = []byte("cidrshards")
	metaLinesPer   = []byte("linesper")
)

// layoutVersion names this layout; a reader refuses any other.
const layoutVersion = "gw-tcprules 2"

// encodeRecord returns the stored value for a rule.
func encodeRecord(r Rule) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(r.Line))
	if r.Deny {
		b = append(b, 'D', 0)
	}
	for _, item := range r.Env {
		b = append(b, '+')
		b = append(b, item...)
		b = append(b, 0)
	}
	return b
}

// appendRecord appends the stored value for a parsed rule to b: the
// bytes encodeRecord gives for p.rule().
func appendRecord(b []byte, p *parsed) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(p.line))
	if p.deny {
		b = append(b, 'D', 0)
	}
	for _, kv := range p.env {
		b = append(b, '+')
		b = append(b, kv[0]...)
		b = append(b, '=')
		b = append(b, kv[1]...)
		b = append(b, 0)
	}
	return b
}

// record is a stored rule, decoded the way tcprulescheck reads it.
type record struct {
	line int
	deny bool
	env  []string
}

// decodeRecord walks the NUL-terminated items as tcprulescheck does: "D"
// denies at once, "+" adds an item, anything else is passed over, and a
// last item without its NUL is ignored. A NUL inside a quoted value thus
// splits it exactly as it does for tcpserver.
func decodeRecord(v []byte) (record, bool) {
	if len(v) < 4 {
		return record{}, false
	}
	rec := record{line: int(binary.BigEndian.Uint32(v))}
	data := v[4:]
	for {
		i := indexNUL(data)
		if i < 0 {
			return rec, true
		}
		switch {
		case i > 0 && data[0] == 'D':
			rec.deny = true
			return rec, true
		case i > 0 && data[0] == '+':
			rec.env = append(rec.env, string(data[1:i]))
		}
		data = data[i+1:]
	}
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// cidrKey returns the "cidr" table key for a masked prefix.
func cidrKey(p netip.Prefix) []byte { return appendCIDRKey(nil, p) }

func appendCIDRKey(dst []byte, p netip.Prefix) []byte {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return append(append(dst, 4, byte(p.Bits())), b[:]...)
	}
	b := a.As16()
	return append(append(dst, 6, byte(p.Bits())), b[:]...)
}
