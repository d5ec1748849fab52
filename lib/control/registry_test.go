package control

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestRegistrySorted(t *testing.T) {
	for i, f := range Registry {
		if i > 0 && Registry[i-1].Name >= f.Name {
			t.Errorf("%s after %s: the registry must be in name order, each name once", f.Name, Registry[i-1].Name)
		}
		if f.Default == "" || f.Doc == "" || len(f.Programs) == 0 {
			t.Errorf("%s: default, doc and programs are all needed: %+v", f.Name, f)
		}
		if got, ok := Lookup(f.Name); !ok || got.Name != f.Name {
			t.Errorf("Lookup(%q) = %+v, %v", f.Name, got, ok)
		}
	}
	if _, ok := Lookup("nosuchfile"); ok {
		t.Error("Lookup found a file gw does not have")
	}
}

// TestSettings reads a control directory as gw-instance config shows it.
func TestSettings(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{
		"me":         "gw.example.net\n",
		"databytes":  "10485760 bytes\n", // qmail reads the leading digits
		"maxrcpt":    "many\n",           // no digits: the default, said so
		"rcpthosts":  "# ours\nexample.com\n\n.example.org\n",
		"scansecret": "0123456789abcdef0123\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]Setting{}
	ss, err := Dir(dir).Settings()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		got[s.Name] = s
	}
	if len(ss) != len(Registry) {
		t.Errorf("%d settings, %d registered", len(ss), len(Registry))
	}
	for name, want := range map[string]struct {
		set   bool
		value string
	}{
		"me":           {true, "gw.example.net"},
		"databytes":    {true, "10485760"},
		"maxrcpt":      {true, "1000 (many is not a number)"},
		"rcpthosts":    {true, "example.com, .example.org"},
		"scansecret":   {true, "(set, not shown)"},
		"timeoutsmtpd": {false, "1200"},
		"helohost":     {false, "gw.example.net"}, // the default "me", resolved
	} {
		if s := got[name]; s.Set != want.set || s.Value != want.value {
			t.Errorf("%s: set %v value %q, want %v %q", name, s.Set, s.Value, want.set, want.value)
		}
	}
	// A file that exists and cannot be read is an error, not the default.
	if err := os.Mkdir(filepath.Join(dir, "badmailfrom"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Dir(dir).Settings(); err == nil {
		t.Error("an unreadable control file read as its default")
	}
}

// TestManPage keeps man/gw-control.5 in step with the registry: one entry
// a registered file and no other, each with the registry's kind, default
// and programs.
func TestManPage(t *testing.T) {
	page, err := os.ReadFile("../../man/gw-control.5")
	if err != nil {
		t.Fatal(err)
	}
	if *updateMan {
		page = []byte(withFiles(string(page)))
		if err := os.WriteFile("../../man/gw-control.5", page, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, files, _ := strings.Cut(string(page), "\n.Sh FILES\n")
	files, _, _ = strings.Cut(files, "\n.Sh ")
	entries := map[string]string{}
	var order []string
	for _, e := range strings.Split(files, "\n.It Pa ")[1:] {
		name, body, _ := strings.Cut(e, "\n")
		entries[name] = body
		order = append(order, name)
	}
	for _, f := range Registry {
		body, ok := entries[f.Name]
		if !ok {
			t.Errorf("gw-control.5 lacks %s", f.Name)
			continue
		}
		delete(entries, f.Name)
		for _, want := range []string{"Kind: " + f.Kind.String() + ".", "Default: " + f.Default + "."} {
			if !strings.Contains(body, want) {
				t.Errorf("gw-control.5: %s: no %q", f.Name, want)
			}
		}
		for _, p := range f.Programs {
			if !strings.Contains(body, ".Xr "+p+" 8") {
				t.Errorf("gw-control.5: %s: read by %s, the page does not say so", f.Name, p)
			}
		}
		if n := strings.Count(body, ".Xr "); n != len(f.Programs) {
			t.Errorf("gw-control.5: %s: %d programs, the registry has %d", f.Name, n, len(f.Programs))
		}
	}
	for name := range entries {
		t.Errorf("gw-control.5 documents %s, which is not in the registry", name)
	}
	if !sort.StringsAreSorted(order) {
		t.Errorf("gw-control.5: entries out of name order: %v", order)
	}
}

var updateMan = flag.Bool("update-man", false, "rewrite the FILES list of man/gw-control.5 from the registry")

// withFiles returns page with its FILES list written from the registry:
// go test -update-man after adding a control file, then read the diff and
// edit the prose around the list if needed.
func withFiles(page string) string {
	head, rest, _ := strings.Cut(page, "\n.Sh FILES\n")
	_, tail, _ := strings.Cut(rest, "\n.Sh ")
	var b strings.Builder
	b.WriteString(head + "\n.Sh FILES\nEach entry gives the kind, the default and the programs that read the\nfile.\n.Bl -tag -width Ds\n")
	for _, f := range Registry {
		doc := strings.ToUpper(f.Doc[:1]) + f.Doc[1:]
		b.WriteString(".It Pa " + f.Name + "\n" + strings.ReplaceAll(doc, `\`, `\e`) + ".\n.br\n")
		b.WriteString("Kind: " + f.Kind.String() + ".\nDefault: " + f.Default + ".\nRead by:\n")
		for i, p := range f.Programs {
			sep := " ,"
			if i == len(f.Programs)-1 {
				sep = " ."
			}
			b.WriteString(".Xr " + p + " 8" + sep + "\n")
		}
	}
	b.WriteString(".El\n.Sh " + tail)
	return b.String()
}
