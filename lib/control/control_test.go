package control

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func dir(t *testing.T, files map[string]string) Dir {
	t.Helper()
	d := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Dir(d)
}

func TestReaders(t *testing.T) {
	d := dir(t, map[string]string{
		"me":           "gw.example.net \t\nsecond line\n",
		"databytes":    "10485760 bytes\n",
		"badint":       "ten\n",
		"rcpthosts":    "example.com\n\n# comment\n.example.org  \n #not a comment\n",
		"smtpgreeting": "  leading kept\n",
	})
	if v, ok, err := d.Line("me"); v != "gw.example.net" || !ok || err != nil {
		t.Errorf("Line(me) = %q, %v, %v", v, ok, err)
	}
	if v, _, _ := d.Line("smtpgreeting"); v != "  leading kept" {
		t.Errorf("Line(smtpgreeting) = %q: leading blanks must stay", v)
	}
	if _, ok, err := d.Line("missing"); ok || err != nil {
		t.Errorf("Line(missing) = %v, %v; want not present", ok, err)
	}
	for name, want := range map[string]int64{"databytes": 10485760, "badint": 7, "missing": 7} {
		if v, err := d.Int(name, 7); v != want || err != nil {
			t.Errorf("Int(%s, 7) = %d, %v; want %d", name, v, err, want)
		}
	}
	l, ok, err := d.List("rcpthosts")
	if want := []string{"example.com", ".example.org", " #not a comment"}; !reflect.DeepEqual(l, want) || !ok || err != nil {
		t.Errorf("List(rcpthosts) = %q, %v, %v; want %q", l, ok, err, want)
	}
	if v, _ := d.LineOrMe("bouncehost", "bouncehost"); v != "gw.example.net" {
		t.Errorf("LineOrMe(bouncehost) = %q, want control/me", v)
	}
}

func TestUnreadableIsAnError(t *testing.T) {
	d := dir(t, nil)
	os.Mkdir(filepath.Join(string(d), "rcpthosts"), 0o755) // a directory cannot be read as a file
	if _, _, err := d.List("rcpthosts"); err == nil {
		t.Error("List of an unreadable rcpthosts gave no error: a gateway would open up")
	}
}

func TestHosts(t *testing.T) {
	h := NewHosts([]string{"Example.COM", ".example.org"})
	cases := map[string]bool{
		"example.com": true, "EXAMPLE.com": true, "a.example.com": false,
		"example.org": false, "a.example.org": true, "a.b.Example.Org": true,
		"example.net": false, "": false, "com": false,
	}
	for d, want := range cases {
		if got := h.Match(d); got != want {
			t.Errorf("Match(%q) = %v, want %v", d, got, want)
		}
	}
}

func FuzzParseList(f *testing.F) {
	f.Add([]byte("a\n#b\n\nc \t\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range parseList(b) {
			if e == "" || e[0] == '#' || e[len(e)-1] == ' ' || e[len(e)-1] == '\t' {
				t.Fatalf("parseList kept entry %q", e)
			}
		}
		leadingInt(string(b), 0)
	})
}
