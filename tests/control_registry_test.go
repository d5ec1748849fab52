package tests

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"gw/lib/callout"
	"gw/lib/control"
	"gw/lib/greylist"
	"gw/lib/instance"
	"gw/lib/logline"
	"gw/lib/qmtp"
	relaydomains "gw/lib/relay"
	"gw/lib/scan"
	"gw/lib/send"
	"gw/lib/smtpd"
	"gw/lib/state"
)

// readInMain are control files a command's main package reads itself,
// where this test cannot call the loader; the test checks that the
// command's source names them.
var readInMain = map[string]string{"rblzones": "../cmd/gw-smtpd/config.go", "dmarcreportfrom": "../cmd/gw-dmarc/main.go"}

// readWhole are the registered files a loader opens or stats rather than
// reads through control.Dir.
var readWhole = map[string]bool{"servercert.pem": true, "recipients": true, "tlspolicy": true, "dkim": true, "milters": true}

// TestControlRegistry drives every loader of control files over an
// instance and holds what they read to lib/control's registry: each file
// read is registered with the kind it is read as and, for numbers, the
// default the loader falls back on; each registered file is read by some
// loader. A control file added without its registry line fails here.
func TestControlRegistry(t *testing.T) {
	root := workDir(t)
	in, err := instance.Create(root, "main", instance.Options{Me: "gw.example.net", SMTP: []string{"127.0.0.1:2525"}, BinDir: "/usr/local/bin"})
	if err != nil {
		t.Fatal(err)
	}
	dir := control.Dir(in.Control())
	// Files whose presence makes a loader read more.
	for name, v := range map[string]string{"clamd": "127.0.0.1:3310\n", "spamd": "127.0.0.1:783\n", "rspamd": "127.0.0.1:11333\n", "callouts": "example.com:\n"} {
		if err := os.WriteFile(filepath.Join(in.Control(), name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type read struct {
		kind control.Kind
		def  string
	}
	var mu sync.Mutex
	seen := map[string][]read{}
	control.Observe(func(name string, kind control.Kind, def string) {
		mu.Lock()
		defer mu.Unlock()
		seen[name] = append(seen[name], read{kind, def})
	})
	defer control.Observe(nil)

	log := logline.New(io.Discard)
	loaders := []struct {
		name string
		load func() error
	}{
		{"smtpd", func() error { _, err := smtpd.Load(dir, log); return err }},
		{"qmtp", func() error { _, err := qmtp.Load(dir, log); return err }},
		{"scan", func() error { _, err := scan.Load(dir, log); return err }},
		{"send", func() error { _, err := send.ReadConfig(string(dir)); return err }},
		{"relay", func() error { _, err := relaydomains.Load(dir); return err }},
		{"greylist", func() error { _, err := greylist.Load(dir, filepath.Join(root, "grey.db")); return err }},
		{"callout", func() error { _, err := callout.Load(dir, "", false); return err }},
		{"instance", func() error { _, err := in.Settings(); return err }},
		{"check", func() error { in.Check(); return nil }},
		// A rediss:// server with a CA of its own makes Load read every
		// statebackend file; nothing listens there, and Load does not dial.
		{"state", func() error {
			for name, v := range map[string]string{"statebackend": "rediss://127.0.0.1:1/0\n", "statebackendca": newTestPKI(t).file("ca.pem") + "\n", "statebackendprefix": "t:\n", "statebackendpassword": "x\n"} {
				if err := os.WriteFile(filepath.Join(in.Control(), name), []byte(v), 0o644); err != nil {
					return err
				}
			}
			_, err := state.Load(dir, log)
			return err
		}},
	}
	for _, l := range loaders {
		if err := l.load(); err != nil {
			t.Errorf("%s: %v", l.name, err)
		}
	}
	control.Observe(nil)

	for name, reads := range seen {
		f, ok := control.Lookup(name)
		if !ok {
			t.Errorf("control/%s is read but not in lib/control's registry", name)
			continue
		}
		for _, r := range reads {
			// Numbers are also read as lines, by gw-instance check.
			if r.kind != f.Kind && !(f.Kind == control.KindInt && r.kind == control.KindLine) {
				t.Errorf("control/%s is read as a %s; the registry says %s", name, r.kind, f.Kind)
			}
			if r.kind == control.KindInt && r.def != f.Default {
				t.Errorf("control/%s defaults to %s in its loader, to %s in the registry", name, r.def, f.Default)
			}
		}
	}
	var unread []string
	for _, f := range control.Registry {
		if _, ok := seen[f.Name]; ok || readWhole[f.Name] {
			continue
		}
		if src, ok := readInMain[f.Name]; ok {
			if b, err := os.ReadFile(src); err != nil || !strings.Contains(string(b), `"`+f.Name+`"`) {
				t.Errorf("control/%s: %s no longer reads it (%v)", f.Name, src, err)
			}
			continue
		}
		unread = append(unread, f.Name)
	}
	sort.Strings(unread)
	if len(unread) > 0 {
		t.Errorf("registered but read by no loader: %v", unread)
	}
}
