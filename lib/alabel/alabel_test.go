package alabel

import "testing"

func TestDomain(t *testing.T) {
	cases := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"münchen.de", "xn--mnchen-3ya.de"},
		{"español.example", "xn--espaol-zwa.example"},
		{"中国", "xn--fiqs8s"},
		{"ドメイン名例.jp", "xn--eckwd4c7cu47r2wf.jp"},
	}
	for _, c := range cases {
		if got, err := Domain(c.in); err != nil || got != c.want {
			t.Errorf("Domain(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := Domain("bad\xffutf8.example"); err == nil {
		t.Error("invalid UTF-8 got an A-label")
	}
}

func FuzzDomain(f *testing.F) {
	f.Add("bücher.example")
	f.Add("中国.テスト")
	f.Fuzz(func(t *testing.T, d string) {
		a, err := Domain(d)
		if err != nil {
			return
		}
		for i := 0; i < len(a); i++ {
			if a[i] >= 0x80 {
				t.Fatalf("Domain(%q) = %q, not ASCII", d, a)
			}
		}
	})
}
