package recipients

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestValid(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"example.com":  "# users\nbob\nCarol\n\ndave  \t\n",
		"catchall.org": "*\n",
		"empty.net":    "# nobody\n",
	}
	for name, body := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("root\n"), 0o644)
	d := Open(dir)
	cases := []struct {
		local, domain string
		want          bool
	}{
		{"bob", "example.com", true},
		{"BOB", "EXAMPLE.com", true},
		{"carol", "example.com", true},
		{"dave", "example.com", true},
		{"mallory", "example.com", false},
		{"", "example.com", false},
		{"# users", "example.com", false},
		{"anyone", "catchall.org", true},
		{"anyone", "empty.net", false},
		{"anyone", "unlisted.example", true}, // no file: not checked
		// hostile domains never name a file outside the directory
		{"root", "../secret", false},
		{"root", "..", false},
		{"root", ".", false},
		{"root", "", false},
		{"root", "a/b", false},
		{"root", "x\x00y", false},
		{"root", ".hidden", false},
	}
	for _, c := range cases {
		got, err := d.Valid(c.local, c.domain)
		if err != nil {
			t.Errorf("Valid(%q, %q): %v", c.local, c.domain, err)
		}
		if got != c.want {
			t.Errorf("Valid(%q, %q) = %v, want %v", c.local, c.domain, got, c.want)
		}
	}
}

// TestReload: an edited file is read again at the next question.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "example.com")
	os.WriteFile(p, []byte("bob\n"), 0o644)
	d := Open(dir)
	if ok, _ := d.Valid("eve", "example.com"); ok {
		t.Fatal("eve valid before she was added")
	}
	os.WriteFile(p, []byte("bob\neve\n"), 0o644)
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if ok, _ := d.Valid("eve", "example.com"); !ok {
		t.Errorf("eve not valid after the edit")
	}
	os.Remove(p)
	if ok, _ := d.Valid("zed", "example.com"); !ok {
		t.Errorf("file removed: the domain is no longer checked")
	}
}

// TestUnreadable: a list that cannot be read is an error (the listener
// answers 451), not an empty list (550 for everyone) nor no list (all
// accepted). A directory stands in for an unreadable file: root reads
// files of mode 000.
func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "example.com"), 0o755)
	if _, err := Open(dir).Valid("bob", "example.com"); err == nil {
		t.Errorf("a directory named after the domain read as a list")
	}
}
