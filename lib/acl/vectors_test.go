package acl

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildDB compiles rules into a database in a test directory and opens it.
func buildDB(t *testing.T, rules string) *DB {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "rules.db")
	if err := Build(strings.NewReader(rules), dbPath, dbPath+".tmp", nil); err != nil {
		t.Fatalf("Build(%q): %v", rules, err)
	}
	db, err := Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// vector is one verified lookup of testdata/vectors/vectors.txt.
type vector struct {
	set, ip, host, info, want string
}

func (v vector) remote() Remote {
	r := Remote{IP: v.ip}
	if v.ip == "(unset)" {
		r.IP = "0.0.0.0" // what tcprulescheck uses
	}
	if v.host != "(unset)" {
		r.Host, r.HasHost = v.host, true
	}
	if v.info != "(unset)" {
		r.Info, r.HasInfo = v.info, true
	}
	return r
}

func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/vectors/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 5 {
			t.Fatalf("bad vector line %q", sc.Text())
		}
		v := vector{set: fields[0], ip: fields[1], host: fields[2], info: fields[3]}
		if err := json.Unmarshal([]byte(fields[4]), &v.want); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestVectors checks the 53 lookups verified against ucspi-tcp (djb's and
// the Debian IPv6 build) in shared/specs/tcprules.md.
func TestVectors(t *testing.T) {
	dbs := map[string]*DB{}
	vs := readVectors(t)
	if len(vs) != 53 {
		t.Fatalf("read %d vectors, want 53", len(vs))
	}
	for _, v := range vs {
		db := dbs[v.set]
		if db == nil {
			rules, err := os.ReadFile("testdata/vectors/" + v.set + ".rules")
			if err != nil {
				t.Fatal(err)
			}
			db = buildDB(t, string(rules))
			dbs[v.set] = db
		}
		d, err := db.Lookup(v.remote())
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Format(); got != v.want {
			t.Errorf("set %s ip=%s host=%s info=%s:\ngot  %q\nwant %q", v.set, v.ip, v.host, v.info, got, v.want)
		}
	}
}
