package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var (
	// helpFlag finds a flag in urfave/cli's help: "   --queue DIR  …" or
	// "   -x value, --acl value".
	helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w(?: \S+)?, )?--([a-z][a-z0-9-]*)`)
	// manFlag finds a flag in an mdoc OPTIONS list: ".It Fl -queue Ar dir"
	// or ".It Fl x , Fl -acl Ar file".
	manFlag = regexp.MustCompile(`(?m)^\.It Fl (?:\w+ , Fl )?-([a-z][a-z0-9-]*)`)
	// helpCommand finds a subcommand under "COMMANDS:".
	helpCommand = regexp.MustCompile(`(?m)^\s{3}([a-z][a-z0-9-]*)(?:, [a-z]+)?\s{2,}`)
)

// TestManPagesMatchFlags keeps every program and its man page together:
// each program under cmd/ has man/<program>.8, every flag its --help shows
// (its subcommands' too) is in the page's OPTIONS, and the page documents
// no flag the program lacks.
func TestManPagesMatchFlags(t *testing.T) {
	programs, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		prog := p.Name()
		t.Run(prog, func(t *testing.T) {
			page, err := os.ReadFile(filepath.Join("..", "man", prog+".8"))
			if err != nil {
				t.Fatalf("no man page: %v", err)
			}
			documented := map[string]bool{}
			for _, m := range manFlag.FindAllStringSubmatch(string(page), -1) {
				if m[1] != "help" && m[1] != "version" {
					documented[m[1]] = true
				}
			}
			have := map[string]bool{}
			help := programHelp(t, prog)
			collectFlags(help, have)
			namesArguments(t, prog, help)
			if _, cmds, ok := strings.Cut(help, "COMMANDS:"); ok {
				cmds, _, _ = strings.Cut(cmds, "OPTIONS:")
				for _, m := range helpCommand.FindAllStringSubmatch(cmds, -1) {
					if m[1] != "help" {
						sub := programHelp(t, prog, m[1])
						collectFlags(sub, have)
						namesArguments(t, prog+" "+m[1], sub)
					}
				}
			}
			var missing, extra []string
			for f := range have {
				if !documented[f] {
					missing = append(missing, "--"+f)
				}
			}
			for f := range documented {
				if !have[f] {
					extra = append(extra, "--"+f)
				}
			}
			sort.Strings(missing)
			sort.Strings(extra)
			if len(missing) > 0 {
				t.Errorf("%s.8 does not document %v", prog, missing)
			}
			if len(extra) > 0 {
				t.Errorf("%s.8 documents %v, which %s lacks", prog, extra, prog)
			}
		})
	}
}

// programHelp returns what prog [command] --help prints, on either stream.
func programHelp(t *testing.T, prog string, command ...string) string {
	t.Helper()
	out, err := exec.Command(bin(prog), append(command, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v --help: %v\n%s", prog, command, err, out)
	}
	return string(out)
}

// barePlaceholder is a flag whose argument --help calls "value", as
// urfave/cli does when the usage text names none in backquotes.
var barePlaceholder = regexp.MustCompile(`(?m)^\s+(?:-\w(?: \S+)?, )?--([a-z][a-z0-9-]*) value\b`)

// namesArguments fails on a flag whose argument --help shows as "value":
// the man page names it (DIR, DURATION, NAME), so --help does too.
func namesArguments(t *testing.T, prog, help string) {
	t.Helper()
	for _, m := range barePlaceholder.FindAllStringSubmatch(help, -1) {
		t.Errorf("%s --help: --%s shows its argument as \"value\"; name it in the usage text (`NAME`)", prog, m[1])
	}
}

func collectFlags(help string, into map[string]bool) {
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		if m[1] != "help" && m[1] != "version" {
			into[m[1]] = true
		}
	}
}

// macroWord finds an mdoc macro name printed as a word of the rendered
// text: a macro that was not at the start of a line, or not parsed as
// one, shows to the reader as "acl/ Ns Ar file".
var macroWord = regexp.MustCompile(`(?m)(?:^|[\s(])(Ns|Pa|Ar|Li|Fl|Cm|Xr|Ql|Dq|Sq|Pq|Ic|Ev|Sx|Nm|Bd|Ed|Bl|El|Oo|Oc)(?:[\s,.;:)]|$)`)

// TestManPagesRenderClean renders every page with mandoc, as man shows
// it, and fails on a macro name left in the text.
func TestManPagesRenderClean(t *testing.T) {
	mandoc := need(t, "mandoc")
	pages, err := filepath.Glob("../man/*.[1-8]")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no man pages: %v", err)
	}
	overstrike := regexp.MustCompile(".\b")
	for _, p := range pages {
		out, err := exec.Command(mandoc, "-Tutf8", p).Output()
		if err != nil {
			t.Errorf("mandoc %s: %v", p, err)
			continue
		}
		text := overstrike.ReplaceAllString(string(out), "")
		for _, m := range macroWord.FindAllStringSubmatchIndex(text, -1) {
			start := max(0, m[0]-30)
			end := min(len(text), m[1]+30)
			t.Errorf("%s: the macro %s shows in the text: %q", filepath.Base(p), text[m[2]:m[3]], text[start:end])
		}
	}
}
