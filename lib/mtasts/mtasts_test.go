package mtasts

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p, err := Parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 999999999\r\next: ignored\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != Enforce || p.MaxAge != MaxAge || len(p.MX) != 2 {
		t.Errorf("%+v", p)
	}
	for host, ok := range map[string]bool{"mail.example.com": true, "MAIL.example.com.": true, "mx1.example.net": true,
		"a.b.example.net": false, "example.net": false, "mail.example.com.evil": false} {
		if p.Matches(host) != ok {
			t.Errorf("Matches(%q) = %v", host, !ok)
		}
	}
	for _, bad := range []string{
		"mode: enforce\nmx: a\nmax_age: 1\n",                   // no version
		"version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",    // unknown mode
		"version: STSv1\nmode: enforce\nmax_age: 1\n",          // no mx
		"version: STSv1\nmode: enforce\nmx: a\n",               // no max_age
		"version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n", // bad pattern
		"version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n",
		strings.Repeat("x", MaxSize+1),
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%.60q) took it", bad)
		}
	}
	if p, err := Parse("version: STSv1\nmode: none\nmax_age: 10\n"); err != nil || p.Mode != None {
		t.Errorf("mode none: %v %v", p, err)
	}
}

func TestParseTXT(t *testing.T) {
	for txt, want := range map[string]string{"v=STSv1; id=20160831085700Z;": "20160831085700Z", "v=STSv1;id=abc": "abc",
		"v=STSv2; id=abc": "", "v=STSv1; id=a-b": "", "v=STSv1;": ""} {
		id, _ := ParseTXT(txt)
		if id != want {
			t.Errorf("ParseTXT(%q) = %q, want %q", txt, id, want)
		}
	}
}

// fakeTXT answers TXT from a map; the cache tests never reach HTTPS
// unless the id changes, and then find nothing listening.
type fakeTXT map[string][]string

func (f fakeTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	if r, ok := f[name]; ok {
		return r, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}
func (f fakeTXT) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// TestCache: a cached policy serves while its id matches and max_age
// has not passed; a new id makes a fetch, and a failed fetch keeps the
// valid cached policy; once expired and unfetchable there is none.
func TestCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	dns := fakeTXT{"_mta-sts.example.com": {"v=STSv1; id=one"}}
	f := &Fetcher{DNS: dns, Dir: dir, Now: func() time.Time { return now }, Port: 1, Timeout: time.Second}
	f.writeCache("example.com", cached{ID: "one", Fetched: now.Unix() - 100, Body: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 1000\n"})
	if p, err := f.Lookup(context.Background(), "example.com"); err != nil || p == nil || p.Mode != Enforce {
		t.Fatalf("same id, fresh: %v %v", p, err)
	}
	dns["_mta-sts.example.com"] = []string{"v=STSv1; id=two"}
	p, err := f.Lookup(context.Background(), "example.com")
	if err == nil || p == nil {
		t.Errorf("new id, fetch failing: %v %v, want the cached policy and the error", p, err)
	}
	delete(dns, "_mta-sts.example.com")
	if p, _ := f.Lookup(context.Background(), "example.com"); p == nil {
		t.Errorf("TXT gone, cache valid: no policy, want the cached one")
	}
	now = now.Add(2000 * time.Second)
	if p, _ := f.Lookup(context.Background(), "example.com"); p != nil {
		t.Errorf("TXT gone, cache expired: %v", p)
	}
	os.WriteFile(filepath.Join(dir, "example.com.json"), []byte(`{"id":"one","fetched":1,"policy":"garbage"}`), 0o640)
	if _, p := f.readCache("example.com"); p != nil {
		t.Errorf("a cache file with a bad policy was believed")
	}
	if f.file("../x") != "" {
		t.Errorf("a domain with a slash names a file")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n")
	f.Add("version: STSv1\r\nmode: testing\r\nmx: *.example.net\r\nmax_age: 0\r\n")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := Parse(body)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxAge || (p.Mode != None && len(p.MX) == 0) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// TestCacheNoLinks: the cache lies below a directory another daemon's
// user owns. A link at the temp name is not written through (the file it
// points to, a journal say, keeps its bytes), and a cache file that is a
// link to a policy elsewhere is not believed.
func TestCacheNoLinks(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	f := &Fetcher{Dir: dir, Now: func() time.Time { return now }}
	victim := filepath.Join(t.TempDir(), "journal")
	os.WriteFile(victim, []byte("gwqjnl1\n"), 0o640)
	os.Symlink(victim, filepath.Join(dir, "example.com.json.tmp"))
	good := cached{ID: "one", Fetched: now.Unix(), Body: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 1000\n"}
	f.writeCache("example.com", good)
	if b, _ := os.ReadFile(victim); string(b) != "gwqjnl1\n" {
		t.Errorf("written through the link at the temp name: %q", b)
	}
	if _, p := f.readCache("example.com"); p == nil || p.Mode != Enforce {
		t.Errorf("the cache written anew: %v", p)
	}

	planted := filepath.Join(t.TempDir(), "policy.json")
	b, _ := json.Marshal(cached{ID: "one", Fetched: now.Unix(), Body: "version: STSv1\nmode: none\nmax_age: 1000\n"})
	os.WriteFile(planted, b, 0o640)
	os.Remove(filepath.Join(dir, "example.com.json"))
	os.Symlink(planted, filepath.Join(dir, "example.com.json"))
	if _, p := f.readCache("example.com"); p != nil {
		t.Errorf("a cache file that is a link was believed: %v", p)
	}
}
