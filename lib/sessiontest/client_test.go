package sessiontest

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"gw/lib/acl"
)

func rulesDB(t *testing.T, rules string) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "tcp.smtp.db")
	if err := acl.Build(strings.NewReader(rules), db, db+".tmp", nil); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestEnvironment: the environment a client gets is tcpserver's, the
// rule's assignments over it, then --env; the rule is named.
func TestEnvironment(t *testing.T) {
	db := rulesDB(t, "192.0.2.10:allow,RELAYCLIENT=\"\",RATE_MSG=\"10/60\"\n=mx.example.org:allow,RBLSMTPD=\"\"\n198.51.100.:deny\n:allow,DATABYTES=\"1000\"\n")
	local := netip.MustParseAddrPort("127.0.0.1:2525")
	cases := []struct {
		name       string
		c          Client
		denied     bool
		set, unset []string // NAME=VALUE the environment holds; NAMEs it does not
		told       string   // an explanation line
	}{
		{"relay client", Client{IP: netip.MustParseAddr("192.0.2.10")}, false,
			[]string{"RELAYCLIENT=", "RATE_MSG=10/60", "GW_ACLRULE=1", "TCPREMOTEIP=192.0.2.10", "TCPLOCALPORT=2525", "PROTO=TCP"},
			[]string{"DATABYTES", "TCPREMOTEHOST"}, `acl: ` + db + `: line 1 decides (key "192.0.2.10"): 192.0.2.10:allow,RELAYCLIENT="",RATE_MSG="10/60"`},
		{"host rule", Client{IP: netip.MustParseAddr("203.0.113.9"), Host: "MX.example.org"}, false,
			[]string{"RBLSMTPD=", "TCPREMOTEHOST=mx.example.org", "GW_ACLRULE=2"}, []string{"RELAYCLIENT"}, `acl: sets RBLSMTPD=""`},
		{"denied", Client{IP: netip.MustParseAddr("198.51.100.66")}, true, []string{"GW_ACLRULE=3"}, nil,
			"acl: the rule denies: tcpserver drops the connection without a reply"},
		{"default rule, --env over it", Client{IP: netip.MustParseAddr("2001:db8::1"), Env: []string{"DATABYTES=5", "RELAYCLIENT="}}, false,
			[]string{"DATABYTES=5", "RELAYCLIENT=", "PROTO=TCP6", "TCPREMOTEIP=2001:db8::1"}, nil, `env: DATABYTES="5" set by --env, over the rule's`},
		{"IPv4-mapped is IPv4", Client{IP: netip.MustParseAddr("::ffff:192.0.2.10")}, false,
			[]string{"RELAYCLIENT=", "TCPREMOTEIP=192.0.2.10", "PROTO=TCP"}, nil, "client 192.0.2.10 to 127.0.0.1:2525"},
		{"no rules", Client{IP: netip.MustParseAddr("192.0.2.10"), ACL: "-"}, false, nil, []string{"RELAYCLIENT", "GW_ACLRULE"},
			"acl: no rules database: every client allowed, environment unchanged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.c.Local, c.c.ACL = local, map[string]string{"": db, "-": ""}[c.c.ACL]
			var told []string
			env, denied, err := c.c.Environment(func(l string) { told = append(told, l) })
			if err != nil || denied != c.denied {
				t.Fatalf("Environment: denied %v, %v; want denied %v", denied, err, c.denied)
			}
			for _, kv := range c.set {
				k, v, _ := strings.Cut(kv, "=")
				if got, ok := env[k]; !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range c.unset {
				if v, ok := env[k]; ok {
					t.Errorf("%s is set (%q)", k, v)
				}
			}
			if !contains(told, c.told) {
				t.Errorf("not told %q:\n%s", c.told, strings.Join(told, "\n"))
			}
		})
	}
}

func contains(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

// TestEnvironmentErrors: a bad --env and an unreadable database are
// errors, not a session under some other policy.
func TestEnvironmentErrors(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	if _, _, err := (Client{IP: ip, Env: []string{"NOEQUALS"}}).Environment(func(string) {}); err == nil {
		t.Errorf("--env NOEQUALS accepted")
	}
	if _, _, err := (Client{IP: ip, Env: []string{"=x"}}).Environment(func(string) {}); err == nil {
		t.Errorf("--env =x accepted")
	}
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, _, err := (Client{IP: ip, ACL: missing}).Environment(func(string) {}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("a missing database: %v", err)
	}
}

func TestMeaning(t *testing.T) {
	got := strings.Join(Meaning(map[string]string{"RELAYCLIENT": "@relay", "RBLSMTPD": "-go away", "GW_NOGREYLIST": "",
		"RATE_MSG": "10/60", "MILTERS": "a", "TCPREMOTEIP": "192.0.2.1"}), "\n")
	want := `RELAYCLIENT is set: the client may relay to any domain; no DNSBL, no greylisting; "@relay" is appended to each recipient
RBLSMTPD="-go away": the client is refused as listed
GW_NOGREYLIST is set: no greylisting
MILTERS="a"
RATE_MSG="10/60"`
	if got != want {
		t.Errorf("Meaning:\n%s\nwant:\n%s", got, want)
	}
	if got := Meaning(map[string]string{}); len(got) != 1 || !strings.HasPrefix(got[0], "RELAYCLIENT is not set") {
		t.Errorf("Meaning of nothing: %q", got)
	}
}
