package acl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary text to the rules parser. Beyond not
// crashing, every rule it accepts must describe its own line (address,
// colon, verb), and must come back unchanged when written out again
// with a quote byte its values do not hold; every refusal must be a
// ParseError naming a line of the input.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"A", "B", "C6", "D6"} {
		if b, err := os.ReadFile("testdata/vectors/" + name + ".rules"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Count(in, []byte("\n")) + 1
		err := Parse(bytes.NewReader(in), func(r Rule) error {
			if r.Line < 1 || r.Line > lines {
				t.Fatalf("rule on line %d of a %d-line input", r.Line, lines)
			}
			rest, ok := strings.CutPrefix(r.Text, r.Address+":")
			if !ok || !(strings.HasPrefix(rest, "allow") || strings.HasPrefix(rest, "deny")) {
				t.Fatalf("rule %+v does not describe its line", r)
			}
			again, ok, err := ParseLine(r.Line, []byte(rewrite(r)+"\n"))
			again.Text = r.Text
			if err != nil || !ok || !reflect.DeepEqual(again, r) {
				t.Fatalf("rule %+v written as %q parses as %+v, %v, %v", r, rewrite(r), again, ok, err)
			}
			c := NewCompiled()
			if _, err := c.Add(r); err != nil {
				t.Fatalf("a parsed rule does not compile: %v", err)
			}
			return nil
		})
		var pe *ParseError
		if err != nil && (!errors.As(err, &pe) || pe.Line < 1 || pe.Line > lines) {
			t.Fatalf("Parse error %v is not a ParseError naming one of %d lines", err, lines)
		}
	})
}

// rewrite writes r back as a rules line, each value quoted with a byte
// it does not hold.
func rewrite(r Rule) string {
	var b strings.Builder
	b.WriteString(r.Address + ":")
	if r.Deny {
		b.WriteString("deny")
	} else {
		b.WriteString("allow")
	}
	for _, item := range r.Env {
		name, value, _ := strings.Cut(item, "=")
		q := byte('"')
		for strings.IndexByte(value, q) >= 0 {
			q++
		}
		b.WriteString("," + name + "=" + string([]byte{q}) + value + string([]byte{q}))
	}
	return b.String()
}

// FuzzBlob feeds arbitrary bytes to the blob readers as a shard of
// "keys" and of "lines" would come from a damaged file: they must never
// panic, and a span they return must lie inside the blob and, for a
// table, follow the key looked up.
func FuzzBlob(f *testing.F) {
	t := sharded{count: 1, keys: []byte("10.1.2.3k2"), recs: []byte("\x00\x00\x00\x01+A=b\x00\x00\x00\x00\x02D\x00")}
	es := []tabEnt{{key: span{8, 0}, rec: span{9, 6}}, {key: span{0, 8}, rec: span{0, 9}}, {key: span{8, 2}, rec: span{9, 6}}}
	f.Add(t.appendTable(nil, es), "10.1.2.3", 1)
	f.Add(t.appendTable(nil, es[:1]), "", 255)
	var texts [linesPerShard][]byte
	texts[1], texts[255] = []byte("1.2.3.4:allow"), []byte(":deny")
	f.Add(appendLines(nil, &texts), "k2", 257)
	f.Add([]byte("\x00\x00\x00\x02\x00\x00\x00\x0c\xff\xff\xff\xff"), "x", 0)
	f.Fuzz(func(t *testing.T, blob []byte, key string, line int) {
		if s, e, found, ok := tableFind(blob, key); found {
			if !ok || s < 2+len(key) || s > e || e > len(blob) || string(blob[s-len(key):s]) != key {
				t.Fatalf("tableFind(%q) = %d, %d, %v, %v in %d bytes", key, s, e, found, ok, len(blob))
			}
		}
		if s, e, found, ok := linesFind(blob, line); ok && (s < 0 || s > e || e > len(blob) || found != (s < e)) {
			t.Fatalf("linesFind(%d) = %d, %d, %v in %d bytes", line, s, e, found, len(blob))
		}
	})
}

// TestBlobRoundTrip: every key written into a table is found with its
// record, and keys not written are not.
func TestBlobRoundTrip(t *testing.T) {
	c := NewCompiled()
	for i := range 500 {
		r := Rule{Line: i + 1, Text: fmt.Sprintf("k%d:allow", i%300), Address: fmt.Sprintf("k%d", i%300), Env: []string{fmt.Sprintf("N=%d", i)}}
		if _, err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	tab := shardTable(c.keys, c.keyArena, c.recArena, newLineSet(c.lines))
	for s := range tab.count {
		blob := tab.appendTable(nil, tab.shard(s))
		for _, e := range tab.shard(s) {
			key := string(e.key.of(c.keyArena))
			st, en, found, ok := tableFind(blob, key)
			if !found || !ok || string(blob[st:en]) != string(e.rec.of(c.recArena)) {
				t.Fatalf("shard %d key %q: %d-%d %v %v", s, key, st, en, found, ok)
			}
			rec, _ := decodeRecord(blob[st:en])
			if want := fmt.Sprintf("N=%s", strings.TrimPrefix(key, "k")); rec.env[0] != want {
				t.Fatalf("key %q: first line lost: %v", key, rec.env)
			}
		}
		if _, _, found, ok := tableFind(blob, "absent"); found || !ok {
			t.Fatalf("shard %d: absent key found=%v ok=%v", s, found, ok)
		}
	}
}
