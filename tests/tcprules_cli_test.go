package tests

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTcprulesCommandLine checks the exit codes of both programs against
// tcprules and tcprulescheck for usage errors and system trouble.
func TestTcprulesCommandLine(t *testing.T) {
	need(t, "tcprules")
	need(t, "tcprulescheck")
	dir := workDir(t)
	good := "1.2.3.4:allow\n"
	tests := []struct {
		name     string
		djb, gw  []string
		stdin    string
		wantCode int
	}{
		{"compile: no arguments", []string{"tcprules"}, []string{bin("gw-tcprules")}, good, 100},
		{"compile: one argument", []string{"tcprules", "x.cdb"}, []string{bin("gw-tcprules"), "x.db"}, good, 100},
		{"compile: tmp in a missing directory",
			[]string{"tcprules", filepath.Join(dir, "a.cdb"), filepath.Join(dir, "none", "a.tmp")},
			[]string{bin("gw-tcprules"), filepath.Join(dir, "a.db"), filepath.Join(dir, "none", "a.tmp")}, good, 111},
		{"compile: tmp in a missing directory, bad input",
			[]string{"tcprules", filepath.Join(dir, "a.cdb"), filepath.Join(dir, "none", "a.tmp")},
			[]string{bin("gw-tcprules"), filepath.Join(dir, "a.db"), filepath.Join(dir, "none", "a.tmp")}, "1:Allow\n", 111},
		{"compile: rename into a missing directory",
			[]string{"tcprules", filepath.Join(dir, "none", "a.cdb"), filepath.Join(dir, "a.tmp")},
			[]string{bin("gw-tcprules"), filepath.Join(dir, "none", "a.db"), filepath.Join(dir, "b.tmp")}, good, 111},
		{"check: no argument", []string{"tcprulescheck"}, []string{bin("gw-tcprulescheck")}, "", 100},
		{"check: missing database", []string{"tcprulescheck", filepath.Join(dir, "none.cdb")},
			[]string{bin("gw-tcprulescheck"), filepath.Join(dir, "none.db")}, "", 111},
	}
	for _, tc := range tests {
		djb := rulesRun(t, nil, tc.stdin, tc.djb[0], tc.djb[1:]...)
		gw := rulesRun(t, nil, tc.stdin, tc.gw[0], tc.gw[1:]...)
		if djb.code != tc.wantCode || gw.code != tc.wantCode {
			t.Errorf("%s: tcprules family exit %d (%q), gw exit %d (%q); want %d", tc.name, djb.code, djb.stderr, gw.code, gw.stderr, tc.wantCode)
		}
		if gw.stdout != "" || !strings.HasPrefix(gw.stderr, filepath.Base(tc.gw[0])+": fatal: ") {
			t.Errorf("%s: gw stdout %q, stderr %q; want one fatal line on stderr", tc.name, gw.stdout, gw.stderr)
		}
	}
	// A tcprules CDB is not a gw database: refused as unreadable.
	if r := rulesRun(t, nil, good, "tcprules", filepath.Join(dir, "c.cdb"), filepath.Join(dir, "c.tmp")); r.code != 0 {
		t.Fatal(r)
	}
	if r := rulesRun(t, nil, "", bin("gw-tcprulescheck"), filepath.Join(dir, "c.cdb")); r.code != 111 {
		t.Errorf("gw-tcprulescheck on a CDB: %+v; want exit 111", r)
	}
}

// TestTcprulesExplain checks --explain: every key tried, then the normal
// output unchanged, then the deciding line.
func TestTcprulesExplain(t *testing.T) {
	dir := workDir(t)
	db := filepath.Join(dir, "r.db")
	rules := "# office\n10.1.:allow,RELAYCLIENT=\"\"\n10.0.0.0/8:deny\n:deny\n"
	if r := rulesRun(t, nil, rules, bin("gw-tcprules"), db, db+".tmp"); r.code != 0 {
		t.Fatal(r)
	}
	got := rulesRun(t, []string{"TCPREMOTEIP=10.1.2.3", "TCPREMOTEHOST=a.example"}, "", bin("gw-tcprulescheck"), "--explain", db)
	want := "try 10.1.2.3: no rule\ntry =a.example: no rule\ntry 10.1.2.: no rule\ntry 10.1.: found, line 2\n" +
		"rule 10.1.:\nset environment variable RELAYCLIENT=\nallow connection\n" +
		"decided by line 2: 10.1.:allow,RELAYCLIENT=\"\"\n"
	if got.code != 0 || got.stdout != want {
		t.Errorf("--explain: exit %d\ngot  %q\nwant %q", got.code, got.stdout, want)
	}
	got = rulesRun(t, []string{"TCPREMOTEIP=10.9.9.9"}, "", bin("gw-tcprulescheck"), "--explain", db)
	if !strings.Contains(got.stdout, "try 10.0.0.0/8: found, line 3\nrule 10.0.0.0/8:\ndeny connection\ndecided by line 3: 10.0.0.0/8:deny\n") {
		t.Errorf("--explain for a CIDR rule: %q", got.stdout)
	}
}
