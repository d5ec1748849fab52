package checkpassword

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// program writes a checkpassword program: it reads the three
// NUL-terminated fields on fd 3, exactly as a real one does, saves them,
// and runs its last argument when the user is alice with the password
// "s3cret pass".
func program(t *testing.T, body string) (string, string) {
	dir := t.TempDir()
	saved := filepath.Join(dir, "input")
	p := filepath.Join(dir, "checkpassword")
	script := "#!/bin/sh\nhead -c 512 <&3 > " + saved + "\n" + body
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p, saved
}

const verify = `user=$(tr '\0' '\n' < "$(dirname "$0")/input" | sed -n 1p)
pass=$(tr '\0' '\n' < "$(dirname "$0")/input" | sed -n 2p)
[ "$user" = alice ] && [ "$pass" = "s3cret pass" ] && exec "$@"
exit 1
`

func TestCheck(t *testing.T) {
	p, saved := program(t, verify)
	c := &Checker{Argv: []string{p}}
	cases := []struct {
		name, user, pass string
		want             bool
	}{
		{"right", "alice", "s3cret pass", true},
		{"wrong password", "alice", "wrong", false},
		{"wrong user", "bob", "s3cret pass", false},
		{"empty", "", "", false},
		{"newline in the user", "alice\nroot", "s3cret pass", false},
		{"shell metacharacters", "$(reboot)", "`id`;|&", false},
		{"long password", "alice", strings.Repeat("p", 4096), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Check(tc.user, tc.pass)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got != tc.want {
				t.Errorf("Check(%q, …) = %v, want %v", tc.user, got, tc.want)
			}
		})
	}
	// The program got user, password and a timestamp, each ending in NUL.
	c.Check("alice", "s3cret pass")
	b, _ := os.ReadFile(saved)
	f := strings.Split(string(b), "\x00")
	if len(f) != 4 || f[0] != "alice" || f[1] != "s3cret pass" || f[2] == "" || f[3] != "" {
		t.Errorf("fd 3 carried %q", b)
	}
}

// TestCheckTrouble: anything but exit 0 or 1 is a temporary failure, and
// so is a program that cannot be run.
func TestCheckTrouble(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"exit 111", "exit 111\n"},
		{"exit 2", "exit 2\n"},
		{"killed", "kill -9 $$\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := program(t, tc.body)
			ok, err := (&Checker{Argv: []string{p}}).Check("alice", "s3cret pass")
			if ok || err == nil {
				t.Errorf("Check = %v, %v; want false and an error", ok, err)
			}
		})
	}
	ok, err := (&Checker{Argv: []string{"/nonexistent/checkpassword"}}).Check("alice", "x")
	if ok || err == nil {
		t.Errorf("missing program: %v, %v", ok, err)
	}
	// A program that succeeds only by running its last argument: True
	// names what it runs.
	p, _ := program(t, verify)
	if ok, err := (&Checker{Argv: []string{p}, True: "/bin/false"}).Check("alice", "s3cret pass"); ok || err != nil {
		t.Errorf("True=/bin/false: %v, %v; want false, nil", ok, err)
	}
}
