package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// vectorsDir holds the rule sets and lookups verified in
// shared/specs/tcprules.md; lib/acl's unit tests read them too.
const vectorsDir = "../lib/acl/testdata/vectors"

// rulesResult is what one program run left behind.
type rulesResult struct {
	code   int
	stdout string
	stderr string
}

// rulesRun runs prog with args, env (the whole environment) and stdin.
func rulesRun(t *testing.T, env []string, stdin string, prog string, args ...string) rulesResult {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", prog, err)
	}
	return rulesResult{code, out.String(), errb.String()}
}

// ucspi6 returns the directory of the IPv6 build's tcprules and
// tcprulescheck, unpacked by scripts/ucspi-tcp-ipv6.sh.
func ucspi6(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GW_UCSPI6")
	if dir == "" {
		dir = "/var/cache/gw-tests/ucspi-tcp-ipv6"
	}
	dir = filepath.Join(dir, "usr", "bin")
	if _, err := os.Stat(filepath.Join(dir, "tcprulescheck")); err != nil {
		t.Fatalf("the IPv6 build of ucspi-tcp is not unpacked (run make peers): %v", err)
	}
	return dir
}

// compileBoth compiles rules with tcprules into base.cdb and with
// gw-tcprules into base.db.
func compileBoth(t *testing.T, base, rules string) (djb, gw rulesResult) {
	t.Helper()
	djb = rulesRun(t, nil, rules, "tcprules", base+".cdb", base+".cdb.tmp")
	gw = rulesRun(t, nil, rules, bin("gw-tcprules"), base+".db", base+".db.tmp")
	return djb, gw
}

// TestTcprulesVectors runs the verified vectors through tcprulescheck (the
// IPv4 build for the IPv4 sets, which djb's tcprules compiles; Debian's
// IPv6 build for the IPv6 sets) and gw-tcprulescheck.
func TestTcprulesVectors(t *testing.T) {
	need(t, "tcprules")
	need(t, "tcprulescheck")
	v6 := ucspi6(t)
	dir := workDir(t)
	data, err := os.ReadFile(filepath.Join(vectorsDir, "vectors.txt"))
	if err != nil {
		t.Fatal(err)
	}
	compiled := map[string]bool{}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		var want string
		if err := json.Unmarshal([]byte(f[4]), &want); err != nil {
			t.Fatal(err)
		}
		set, base := f[0], filepath.Join(dir, f[0])
		ipv6 := strings.HasSuffix(set, "6")
		if !compiled[set] {
			rules, err := os.ReadFile(filepath.Join(vectorsDir, set+".rules"))
			if err != nil {
				t.Fatal(err)
			}
			djb, gw := compileBoth(t, base, string(rules))
			if gw.code != 0 {
				t.Fatalf("set %s: gw-tcprules: exit %d: %s", set, gw.code, gw.stderr)
			}
			// djb's tcprules refuses the IPv6 sets: their first colon is
			// not followed by allow or deny. Reading them is the extension.
			if wantCode := map[bool]int{false: 0, true: 100}[ipv6]; djb.code != wantCode {
				t.Fatalf("set %s: tcprules exit %d, want %d: %s", set, djb.code, wantCode, djb.stderr)
			}
			if ipv6 {
				// Every line of these sets has allow or deny after a
				// colon: the IPv6 build's endless loop is not reached.
				r := rulesRun(t, nil, string(rules), filepath.Join(v6, "tcprules"), base+".cdb6", base+".cdb6.tmp")
				if r.code != 0 {
					t.Fatalf("set %s: the IPv6 tcprules: exit %d: %s", set, r.code, r.stderr)
				}
			}
			compiled[set] = true
		}
		var env []string
		for i, name := range []string{"TCPREMOTEIP", "TCPREMOTEHOST", "TCPREMOTEINFO"} {
			if f[1+i] != "(unset)" {
				env = append(env, name+"="+f[1+i])
			}
		}
		gw := rulesRun(t, env, "", bin("gw-tcprulescheck"), base+".db")
		if gw.stdout != want || gw.code != 0 {
			t.Errorf("set %s env %q: gw-tcprulescheck exit %d:\ngot  %q\nwant %q", set, env, gw.code, gw.stdout, want)
		}
		if !ipv6 {
			djb := rulesRun(t, env, "", "tcprulescheck", base+".cdb")
			if djb.stdout != want {
				t.Errorf("set %s env %q: tcprulescheck itself says %q, the spec %q", set, env, djb.stdout, want)
			}
		} else {
			djb := rulesRun(t, env, "", filepath.Join(v6, "tcprulescheck"), base+".cdb6")
			if djb.stdout != want {
				t.Errorf("set %s env %q: the IPv6 tcprulescheck says %q, the spec %q", set, env, djb.stdout, want)
			}
		}
		n++
	}
	if n != 53 {
		t.Errorf("ran %d vectors, want 53", n)
	}
}

// djbParseError is tcprules' message for a refused line.
var (
	djbParseError = regexp.MustCompile(`^tcprules: fatal: unable to parse this line: ((?s).*)\n$`)
	gwParseError  = regexp.MustCompile(`(?m)^gw-tcprules: fatal: unable to parse line ([0-9]+): `)
)

// sameRejection checks that tcprules and gw-tcprules agree on rules: both
// accept it, or both refuse it with 100 and gw-tcprules names the line
// that tcprules prints.
func sameRejection(t *testing.T, name, rules string, djb, gw rulesResult) bool {
	t.Helper()
	if djb.code != gw.code {
		t.Errorf("%s: tcprules exit %d (%q), gw-tcprules exit %d (%q)\nrules %q", name, djb.code, djb.stderr, gw.code, gw.stderr, rules)
		return false
	}
	if djb.code == 0 {
		if gw.stderr != "" && !strings.Contains(gw.stderr, ": warning: ") {
			t.Errorf("%s: gw-tcprules said %q on success", name, gw.stderr)
		}
		return true
	}
	dm := djbParseError.FindStringSubmatch(djb.stderr)
	gm := gwParseError.FindStringSubmatch(gw.stderr)
	if dm == nil || gm == nil {
		t.Errorf("%s: unexpected messages: tcprules %q, gw-tcprules %q", name, djb.stderr, gw.stderr)
		return false
	}
	n, _ := strconv.Atoi(gm[1])
	lines := strings.Split(rules, "\n")
	// tcprules prints the line as a C string: up to its first NUL.
	if n < 1 || n > len(lines) || rulesCString(strings.TrimRight(lines[n-1], "\n \t")) != dm[1] {
		t.Errorf("%s: gw-tcprules blames line %d, tcprules blames %q\nrules %q", name, n, dm[1], rules)
		return false
	}
	return true
}

func rulesCString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// TestTcprulesSyntax runs the syntax vectors of the spec through both
// compilers: same verdict, and a refused file leaves the old database
// byte for byte as it was.
func TestTcprulesSyntax(t *testing.T) {
	need(t, "tcprules")
	dir := workDir(t)
	inputs := []string{
		"1.2.3.4:deny\n", "1.2.3.4:denied\n", "1.2.3.4:Allow\n", "1.2.3.4:allow,FOO\n",
		"1.2.3.4:allow,FOO=\n", "1.2.3.4:allow,FOO=\"bar\n", "1.2.3.4:allow FOO=\"bar\"\n",
		"1.2.3.4 : allow\n", "1.2.3.4:allow,\n", "1.2.3.4:allow,FOO=\"a\",\n", "1.2.3.4:allow\r\n",
		"1.2.3.4:allow   \t \n", "garbage line without colon\n", "   \n", "1.2.3.x-5:deny\n",
		"1.2.3.4:allow,FOO=\"x\"BAR=\"y\"\n", "1.2.3.4:allow,FOO=\"x\",BAR=\"y\"", ":allow\n",
		"# comment: with colon\n", "  # indented hash:deny\n",
		// more of the silent and refused cases
		"1.2.3.4-5-6:deny\n", "1.2.3.-5:deny\n", "1.2.3.4-:deny\n", "1.2.3.1-99999999999999999999:deny\n",
		"a-b:deny\n", "x.1-2:deny\n", "=a-b:deny\n", "joe@1-x:deny\n", "1.2.3.4:allow,A= x \n",
		"1.2.3.4:allow,=\"\"\n", "1.2.3.4:allow,A=,,\n", "1.2.3.4:allowed\n", "\n\n\n1.2.3.4:allow,A\n",
		"1.2.3.4:allow,A=\"x\x00y\"\n", "1.2.3.4:deny,A=\"x\"\n", "#\n", "1.2.3.4:allow,A=\"a\"\t,B=\"b\"\n",
	}
	good := "9.9.9.9:allow,OLD=\"yes\"\n"
	for i, in := range inputs {
		base := filepath.Join(dir, fmt.Sprint(i))
		if djb, gw := compileBoth(t, base, good); djb.code != 0 || gw.code != 0 {
			t.Fatalf("compiling the good rules: %v %v", djb, gw)
		}
		before, err := os.ReadFile(base + ".db")
		if err != nil {
			t.Fatal(err)
		}
		djb, gw := compileBoth(t, base, in)
		if !sameRejection(t, fmt.Sprintf("input %q", in), in, djb, gw) {
			continue
		}
		after, _ := os.ReadFile(base + ".db")
		if gw.code != 0 && !bytes.Equal(before, after) {
			t.Errorf("input %q: refused, but rules.db changed", in)
		}
		if _, err := os.Stat(base + ".db.tmp"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("input %q: rules.tmp left behind (%v)", in, err)
		}
		if gw.code == 0 {
			if c, g := readCDB(t, base+".cdb"), readGWKeys(t, base+".db"); !reflect.DeepEqual(c, g) {
				t.Errorf("input %q: keys differ:\ntcprules    %q\ngw-tcprules %q", in, c, g)
			}
		}
	}
}

// TestTcprulesDifferential compiles seeded random rule files with both
// compilers and asks both check programs about random clients: the
// verdicts, the stored keys and data, and every output byte must agree.
// GW_TCPRULES_SEED picks another seed.
func TestTcprulesDifferential(t *testing.T) {
	need(t, "tcprules")
	need(t, "tcprulescheck")
	// At least minFiles files and minAccepted accepted ones, each asked
	// probesPerFile questions: 10,000 probes at the least.
	const minFiles, minAccepted, probesPerFile = 220, 200, 50
	seed := uint64(20261122)
	if s := os.Getenv("GW_TCPRULES_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	g := &rulesGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	dir := workDir(t)

	type job struct {
		base string
		p    rulesProbe
	}
	var jobs []job
	accepted, refused := 0, 0
	files := 0
	for ; files < minFiles || accepted < minAccepted; files++ {
		rules := g.file()
		base := filepath.Join(dir, fmt.Sprintf("%03d", files))
		if err := os.WriteFile(base+".rules", []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		djb, gw := compileBoth(t, base, rules)
		if !sameRejection(t, base+".rules", rules, djb, gw) {
			continue
		}
		if djb.code != 0 {
			refused++
			continue
		}
		accepted++
		if c, gk := readCDB(t, base+".cdb"), readGWKeys(t, base+".db"); !reflect.DeepEqual(c, gk) {
			t.Errorf("%s.rules: stored keys differ:\ntcprules    %q\ngw-tcprules %q", base, c, gk)
		}
		for j := 0; j < probesPerFile; j++ {
			jobs = append(jobs, job{base, g.probe()})
		}
	}
	if refused < 10 {
		t.Errorf("generator made only %d refused files; want at least 10", refused)
	}

	var mismatches atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{} // which kind of key decided, to show the probes hit the rules
	var wg sync.WaitGroup
	next := make(chan job)
	for w := 0; w < 2*runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				djb := rulesRun(t, j.p.env(), "", "tcprulescheck", j.base+".cdb")
				gw := rulesRun(t, j.p.env(), "", bin("gw-tcprulescheck"), j.base+".db")
				mu.Lock()
				kinds[decidingKind(djb.stdout)]++
				mu.Unlock()
				if djb != gw && mismatches.Add(1) <= 20 {
					t.Errorf("%s.rules, env %q:\ntcprulescheck    %d %q %q\ngw-tcprulescheck %d %q %q",
						j.base, j.p.env(), djb.code, djb.stdout, djb.stderr, gw.code, gw.stdout, gw.stderr)
				}
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	t.Logf("%d files (%d accepted, %d refused by both), %d probes, %d mismatches",
		files, accepted, refused, len(jobs), mismatches.Load())
	t.Logf("deciding keys: %v", kinds)
}

// decidingKind names the kind of key in tcprulescheck's first line.
func decidingKind(out string) string {
	first, _, _ := strings.Cut(out, "\n")
	key, ok := strings.CutPrefix(first, "rule ")
	key = strings.TrimSuffix(key, ":")
	switch {
	case !ok:
		return "none"
	case key == "":
		return "empty"
	case key == "=":
		return "="
	case strings.Contains(key, "@="):
		return "info@=host"
	case strings.Contains(key, "@"):
		return "info@ip"
	case strings.HasPrefix(key, "=."):
		return "=.suffix"
	case strings.HasPrefix(key, "="):
		return "=host"
	case strings.HasSuffix(key, "."):
		return "prefix"
	}
	return "ip"
}
