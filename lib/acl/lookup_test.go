package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLookupExtensions covers what tcprules cannot say: CIDR prefixes,
// tried with the dotted prefixes longest first, and IPv6 rules.
func TestLookupExtensions(t *testing.T) {
	db := buildDB(t, strings.Join([]string{
		`10.1.2.0/23:allow,WHO="cidr23"`,     // 1
		`10.1.:allow,WHO="dotted16"`,         // 2
		`10.0.0.0/8:allow,WHO="cidr8"`,       // 3
		`172.16.0.0/12:deny`,                 // 4
		`172.16.:allow,WHO="dotted16"`,       // 5
		`192.168.0.0/16:deny`,                // 6: same length as the next, earlier line
		`192.168.:allow,WHO="late dotted"`,   // 7
		`2001:db8::/32:allow,WHO="v6cidr32"`, // 8
		`2001:db8:1::allow,WHO="v6text"`,     // 9: key 2001:db8:1:
		`2001:db8:1:2::/64:deny`,             // 10
		`0.0.0.0/0:allow,WHO="any v4"`,       // 11
		`=.example.com:allow,WHO="domain"`,   // 12
		`::/0:allow,WHO="any v6"`,            // 13
		`:deny`,                              // 14
	}, "\n"))
	tests := []struct {
		ip, host string
		key      string
		line     int
	}{
		{"10.1.2.9", "", "10.1.2.0/23", 1},
		{"10.1.9.9", "", "10.1.", 2},
		{"10.9.9.9", "", "10.0.0.0/8", 3},
		{"172.17.0.1", "", "172.16.0.0/12", 4},
		{"172.16.0.1", "", "172.16.", 5},         // /16 beats /12
		{"192.168.1.1", "", "192.168.0.0/16", 6}, // equal length: the earlier line
		{"2001:db8::5", "", "2001:db8::/32", 8},
		{"2001:db8:1::5", "", "2001:db8:1:", 9},          // 48 bits of text beat /32
		{"2001:db8:1:2::5", "", "2001:db8:1:2::/64", 10}, // /64 beats 48 bits of text
		{"8.8.8.8", "", "0.0.0.0/0", 11},
		{"8.8.8.8", "a.example.com", "0.0.0.0/0", 11}, // ip prefixes before =.suffix
		{"2002::1", "", "::/0", 13},
		{"::ffff:8.8.8.8", "", "::/0", 13}, // a mapped address is IPv6 text
		{"not-an-ip", "a.example.com", "=.example.com", 12},
		{"not-an-ip", "", "", 14},
	}
	for _, tc := range tests {
		r := Remote{IP: tc.ip, Host: tc.host, HasHost: tc.host != ""}
		d, err := db.Lookup(r)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Found || d.Key != tc.key || d.Line != tc.line {
			t.Errorf("Lookup(%+v) = key %q line %d (found %v); want key %q line %d", r, d.Key, d.Line, d.Found, tc.key, tc.line)
		}
	}
}

func TestLookupOrder(t *testing.T) {
	db := buildDB(t, `
joe@1.2.3.4:allow,K="info@ip"
joe@=h.example.com:allow,K="info@=host"
1.2.3.4:allow,K="ip"
=h.example.com:allow,K="=host"
1.2.3.:allow,K="prefix"
=.example.com:allow,K="=.suffix"
=:allow,K="="
:allow,K="empty"
`)
	tests := []struct {
		r    Remote
		want string
	}{
		{Remote{IP: "1.2.3.4", Info: "joe", HasInfo: true, Host: "h.example.com", HasHost: true}, "K=info@ip"},
		{Remote{IP: "1.2.3.5", Info: "joe", HasInfo: true, Host: "h.example.com", HasHost: true}, "K=info@=host"},
		{Remote{IP: "1.2.3.4", Info: "bob", HasInfo: true, Host: "h.example.com", HasHost: true}, "K=ip"},
		{Remote{IP: "1.2.3.5", Host: "h.example.com", HasHost: true}, "K==host"},
		{Remote{IP: "1.2.3.5", Host: "x.example.com", HasHost: true}, "K=prefix"},
		{Remote{IP: "9.2.3.5", Host: "x.example.com", HasHost: true}, "K==.suffix"},
		{Remote{IP: "9.2.3.5", Host: "example.com", HasHost: true}, "K=="},
		{Remote{IP: "9.2.3.5", Host: "", HasHost: true}, "K=="},
		{Remote{IP: "9.2.3.5"}, "K=empty"},
		{Remote{IP: "9.2.3.5", Info: "joe", HasInfo: true}, "K=empty"},
	}
	for _, tc := range tests {
		d, err := db.Lookup(tc.r)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Env) != 1 || d.Env[0] != tc.want {
			t.Errorf("Lookup(%+v) env %q; want %q", tc.r, d.Env, tc.want)
		}
	}
}

// TestLookupProbes checks that a lookup costs a handful of probes however
// many rules there are.
func TestLookupProbes(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "10.%d.%d.%d:allow,N=\"%d\"\n", i>>16&255, i>>8&255, i&255, i)
	}
	b.WriteString("192.168.0.0/16:deny\n172.16.0.0/12:deny\n:deny\n")
	db := buildDB(t, b.String())
	probes := 0
	d, err := db.LookupTrace(Remote{IP: "11.1.2.3", Host: "a.b.example.com", HasHost: true, Info: "x", HasInfo: true},
		func(Probe) { probes++ })
	if err != nil || d.Key != "" || !d.Deny {
		t.Fatalf("lookup = %+v, %v; want the default deny", d, err)
	}
	// info@ip, info@=host, ip, =host, 3 dotted prefixes, 2 CIDR lengths,
	// 3 suffixes, "=", "".
	if probes != 14 {
		t.Errorf("lookup took %d probes; want 14", probes)
	}
}

func TestDecisionAssignments(t *testing.T) {
	db := buildDB(t, "1:allow,A=\"x\x00+NOEQ\",B=\"\",A=\"y\"\n2:allow,A=\"x\x00D\"\n")
	d, _ := db.Lookup(Remote{IP: "1"})
	if want := []string{"A=x", "NOEQ", "B=", "A=y"}; !reflect.DeepEqual(d.Env, want) || d.Deny {
		t.Errorf("env %q deny %v; want %q allow", d.Env, d.Deny, want)
	}
	if want := [][2]string{{"A", "x"}, {"B", ""}, {"A", "y"}}; !reflect.DeepEqual(d.Assignments(), want) {
		t.Errorf("Assignments() = %q; want %q", d.Assignments(), want)
	}
	d, _ = db.Lookup(Remote{IP: "2"})
	if want := "rule 2:\nset environment variable A=x\ndeny connection\n"; d.Format() != want {
		t.Errorf("a NUL then D in a value: %q; want %q (as tcprulescheck)", d.Format(), want)
	}
}

func TestBuildKeepsOldDatabase(t *testing.T) {
	dir := t.TempDir()
	dbPath, tmp := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp")
	if err := Build(strings.NewReader("1:allow\n"), dbPath, tmp, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(dbPath)

	err := Build(strings.NewReader("1:allow\n2:allow,X\n"), dbPath, tmp, nil)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 {
		t.Fatalf("Build(bad input) = %v; want a line 2 ParseError", err)
	}
	err = Build(strings.NewReader("1:allow\n"), dbPath, filepath.Join(dir, "missing", "r.tmp"), nil)
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("Build(unwritable tmp) = %v; want system trouble", err)
	}
	after, _ := os.ReadFile(dbPath)
	if string(before) != string(after) {
		t.Error("a failed Build changed the database")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v; want not exist", err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 1000)), 0o644)
	if db, err := Open(junk); err == nil {
		db.Close()
		t.Error("Open(junk) succeeded")
	}
}

func TestRemoteIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":        "127.0.0.1",
		"::ffff:127.0.0.1": "127.0.0.1",
		"2001:DB8:0:0::1":  "2001:db8::1",
		"fe80::1%eth0":     "fe80::1",
		"::1":              "::1",
	} {
		if got := RemoteIP(netip.MustParseAddr(in)); got != want {
			t.Errorf("RemoteIP(%s) = %s; want %s", in, got, want)
		}
	}
}

// BenchmarkOpenLookup measures what a listener pays a connection: open
// the database, look one client up through every step, close it.
func BenchmarkOpenLookup(b *testing.B) {
	var rules strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&rules, "10.%d.%d.%d:allow,N=\"%d\"\n", i>>16&255, i>>8&255, i&255, i)
	}
	rules.WriteString("192.168.0.0/16:deny\n=.example.com:allow\n:deny\n")
	dir := b.TempDir()
	path := filepath.Join(dir, "r.db")
	if err := Build(strings.NewReader(rules.String()), path, path+".tmp", nil); err != nil {
		b.Fatal(err)
	}
	r := Remote{IP: "11.1.2.3", Host: "a.b.example.org", HasHost: true}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		db, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Lookup(r); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}
