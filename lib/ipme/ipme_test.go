package ipme

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gw/lib/control"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMe(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("198.51.100.7")}
	cases := []struct {
		name  string
		files map[string]string
		yes   []string
		no    []string
	}{
		{"no listeners: port 25 on every own address",
			map[string]string{"me": "GW.example.\n"},
			[]string{"192.0.2.10:25", "[2001:db8::10]:25", "127.0.0.1:25", "127.0.0.2:25", "[::1]:25", "[::ffff:192.0.2.10]:25"},
			[]string{"192.0.2.10:26", "192.0.2.11:25", "127.0.0.1:2525"}},
		{"listeners: their ports, a bound one on its address only",
			map[string]string{"me": "gw.example", "listeners": "# face proto address acl\noutside smtp 0.0.0.0:2525 tcp.smtp\ninside smtp 127.0.0.1:10025 tcp.inside\nq qmtp [::]:209\n"},
			[]string{"192.0.2.10:2525", "127.0.0.1:10025", "127.0.0.5:2525", "[2001:db8::10]:209"},
			[]string{"192.0.2.10:25", "127.0.0.2:10025", "192.0.2.10:10025"}},
		{"moreipme and notipme",
			map[string]string{"me": "gw.example", "moreipme": "203.0.113.5\n", "notipme": "198.51.100.7\n"},
			[]string{"203.0.113.5:25"},
			[]string{"198.51.100.7:25", "203.0.113.6:25"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			m, err := load(control.Dir(dir), own)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.yes {
				if !m.Addr(netip.MustParseAddrPort(s)) {
					t.Errorf("%s is not me", s)
				}
			}
			for _, s := range c.no {
				if m.Addr(netip.MustParseAddrPort(s)) {
					t.Errorf("%s is me", s)
				}
			}
			if !m.Name("Gw.Example.") || m.Name("mx.example") {
				t.Errorf("names: %v", m.names)
			}
		})
	}
}

func TestMeBadFiles(t *testing.T) {
	for name, text := range map[string]string{
		"moreipme":  "not-an-address\n",
		"notipme":   "192.0.2.300\n",
		"listeners": "outside smtp 0.0.0.0\n",
	} {
		dir := t.TempDir()
		write(t, dir, map[string]string{"me": "gw.example", name: text})
		if _, err := load(control.Dir(dir), nil); err == nil {
			t.Errorf("control/%s %q: no error", name, text)
		}
	}
}

func TestNilMe(t *testing.T) {
	var m *Me
	if m.Name("x") || m.Addr(netip.MustParseAddrPort("127.0.0.1:25")) {
		t.Error("a nil Me is someone")
	}
}

// FuzzListeners: any control/listeners either loads or is refused with
// an error; when it loads, a listener bound to one address is that
// address and port.
func FuzzListeners(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		write(t, dir, map[string]string{"me": "gw.example", "listeners": text})
		m, err := load(control.Dir(dir), []netip.Addr{netip.MustParseAddr("192.0.2.10")})
		if err != nil {
			return
		}
		for _, line := range parseLines(text) {
			f := strings.Fields(line)
			ap, err := netip.ParseAddrPort(f[2])
			if err != nil || ap.Port() == 0 {
				continue
			}
			if !ap.Addr().IsUnspecified() && ap.Addr().Zone() == "" && !m.Addr(ap) {
				t.Fatalf("listener %q is not me", line)
			}
		}
	})
}

// parseLines is what control.Dir.List gives of text: lines without
// comments and blanks.
func parseLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}
