package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// pythonNames lists, for each file, the attachment names Python's email
// package finds: message_from_bytes with policy default, then
// get_filename over walk().
const pythonNames = `
import email, email.policy, json, os, sys
out = {}
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        m = email.message_from_bytes(f.read(), policy=email.policy.default)
    out[os.path.basename(path)] = [n for n in (p.get_filename() for p in m.walk()) if n]
print(json.dumps(out))
`

// walkNames returns every name gw's walk gives the parts of msg.
func walkNames(msg []byte) []string {
	var names []string
	walkMIME(bytes.NewReader(msg), 0, 0, func(p *mimePart) *Finding {
		names = append(names, p.Names...)
		return nil
	})
	return names
}

// asciiName keeps a name's ASCII: the two parsers may render a non-ASCII
// byte differently, and the extension, which the rules look at, is ASCII.
func asciiName(s string) string {
	return strings.Map(func(r rune) rune {
		if r > '~' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// TestWalkFindsWhatPythonFinds holds gw's MIME walk to Python's email
// package on a corpus of damaged messages: every name Python finds, gw
// finds too, and a banned one makes Inspect refuse the message.
func TestWalkFindsWhatPythonFinds(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed to check the MIME walk against Python's email package")
	}
	files, err := filepath.Glob("testdata/mime-damaged/*.eml")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	out, err := exec.Command("python3", append([]string{"-c", pythonNames}, files...)...).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var py map[string][]string
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	rules := testRules()
	for _, f := range files {
		base := filepath.Base(f)
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		gw := map[string]bool{}
		for _, n := range walkNames(msg) {
			gw[asciiName(n)] = true
		}
		banned := ""
		for _, n := range py[base] {
			if !gw[asciiName(n)] {
				t.Errorf("%s: Python finds %q, gw does not (gw: %q)", base, n, sorted(gw))
			}
			if ext := (&walker{rules: rules}).bannedName(n); ext != "" {
				banned = ext
			}
		}
		if banned == "" {
			continue
		}
		fd, err := rules.Inspect(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if fd == nil || fd.Class != ClassBanned {
			t.Errorf("%s: Python finds a .%s, Inspect says %v", base, banned, fd)
		}
	}
}

func sorted(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// TestInspectDamage: what the walk cannot follow for certain is class
// badmime, unless a stronger rule matched first; what it can follow
// despite damage is judged on its content.
func TestInspectDamage(t *testing.T) {
	cut := "Content-Type: multipart/mixed; boundary=----=_Part_1\n\n------=_Part_1\nContent-Type: text/plain\n\nhi\n------=_Part_1--\n"
	cases := []struct{ name, msg, class, rule string }{
		{"boundary cut at a special", cut, ClassBadMIME, "boundary: unquoted value cut at a special character"},
		{"no boundary", "Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n", ClassBadMIME, "multipart without a boundary"},
		{"no delimiter line", "Content-Type: multipart/mixed; boundary=b\n\nx\n", ClassBadMIME, "multipart without a delimiter line"},
		{"boundary twice", "Content-Type: multipart/mixed; boundary=a; boundary=b\n\n--a\n\nx\n--a--\n", ClassBadMIME, "boundary given twice"},
		{"header over 1 MiB", "Subject: x\n" + strings.Repeat(" y\n", 400000) + "\nbody\n", ClassBadMIME, "header over 1 MiB"},
		{"header line over 1 MiB", "Subject: " + strings.Repeat("y", 1<<20+10) + "\n\nbody\n", ClassBadMIME, "header line over 1 MiB"},
		{"a body line over 1 MiB right after the delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + strings.Repeat("A", 1<<20+10) + "\n--b\nContent-Type: text/plain; name=x.lnk\n\n--b--\n", ClassBanned, "ext=lnk"},
		{"two Content-Types", "Content-Type: multipart/mixed; boundary=one\nContent-Type: multipart/mixed; boundary=two\n\n--one\n\nx\n--two\nContent-Type: text/plain; name=two.exe\n\n--one--\n--two--\n", ClassBadMIME, "Content-Type given twice"},
		{"damage and a banned name: banned wins", strings.Replace(cut, "boundary=", "name=x.exe; boundary=", 1), ClassBanned, "ext=exe"},
		{"no close delimiter is followed", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n", "", ""},
		{"colon-less line ends the header", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nno colon\n\nx\n--b\nContent-Type: text/plain; name=a.pif\n\nx\n--b--\n", ClassBanned, "ext=pif"},
		{"uuencoded name in text", "Subject: x\n\nbegin 644 tool.exe\nM\n`\nend\n", ClassBanned, "uu-ext=exe"},
		{"uuencoded harmless name", "Subject: x\n\nbegin 644 notes.txt\nM\n`\nend\n", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := testRules().Inspect(strings.NewReader(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			class, rule := "", ""
			if f != nil {
				class, rule = f.Class, f.Rule
			}
			if class != c.class || rule != c.rule {
				t.Errorf("Inspect = %q %q, want %q %q", class, rule, c.class, c.rule)
			}
		})
	}
}

// TestWalkHardDepth: with no depth limit configured the walk still stops
// at hardMaxDepth, so nesting cannot exhaust the stack.
func TestWalkHardDepth(t *testing.T) {
	msg := strings.Repeat("Content-Type: message/rfc822\n\n", hardMaxDepth+100)
	f := walkMIME(strings.NewReader(msg), 0, 0, func(*mimePart) *Finding { return nil })
	if f == nil || f.Class != ClassBomb || f.Rule != fmt.Sprintf("depth>%d", hardMaxDepth) {
		t.Errorf("walk = %v, want a bomb at depth %d", f, hardMaxDepth)
	}
}

// FuzzWalkMIME: the walk ends on any input, without a panic, within
// bounded time; so does Inspect over the same input.
func FuzzWalkMIME(f *testing.F) {
	files, _ := filepath.Glob("testdata/mime-damaged/*.eml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && len(b) < 8<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			walkNames(data)
			testRules().Inspect(bytes.NewReader(data))
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("no result after 5s for %d bytes", len(data))
		}
	})
}
