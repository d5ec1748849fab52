package smtpd

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestPregreet: a client that talks before the greeting gets 554 and is
// dropped, whether its bytes were there before the session began or came
// during greetdelay; a relay client is exempt; a client that waits is
// greeted.
func TestPregreet(t *testing.T) {
	cases := []struct {
		name   string
		delay  time.Duration
		after  time.Duration // when the client talks; <0: before the session starts
		relay  bool
		prefix string
	}{
		{"before the session", 0, -1, false, "554 5.5.0 "},
		{"during greetdelay", 300 * time.Millisecond, 50 * time.Millisecond, false, "554 5.5.0 "},
		{"relay client exempt", 0, -1, true, "220 "},
		{"silent through greetdelay", 100 * time.Millisecond, 0, false, "220 "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.GreetDelay = c.delay
			server, client := tcpPair(t)
			defer client.Close()
			if c.after < 0 {
				io.WriteString(client, "EHLO spam.example\r\n")
				time.Sleep(50 * time.Millisecond)
			}
			done := make(chan struct{})
			go func() { Serve(server, cfg, Client{Relay: c.relay, Injector: &recordingInjector{}}); close(done) }()
			if c.after > 0 {
				time.Sleep(c.after)
				io.WriteString(client, "EHLO spam.example\r\n")
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, _ := io.ReadAtLeast(client, buf, 4)
			if got := string(buf[:n]); !strings.HasPrefix(got, c.prefix) {
				t.Errorf("first reply %q, want %q…", got, c.prefix)
			}
			if c.prefix == "554 5.5.0 " {
				rest, _ := io.ReadAll(client)
				if len(rest) != 0 {
					t.Errorf("after the 554: %q, want the connection closed", rest)
				}
			}
			client.CloseWrite()
			<-done
		})
	}
}

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := &AuthLimiter{Max: 3, Window: time.Minute, Now: func() time.Time { return now }}
	steps := []struct {
		ip      string
		advance time.Duration
		fail    bool
		blocked bool
	}{
		{"192.0.2.1", 0, true, false},
		{"192.0.2.1", time.Second, true, false},
		{"::ffff:192.0.2.1", time.Second, true, true}, // the same address, mapped
		{"192.0.2.2", 0, false, false},                // its neighbour is not
		{"192.0.2.1", 57 * time.Second, false, true},  // the first is 59 s old
		{"192.0.2.1", time.Second, false, false},      // 60 s: out of the window
		{"2001:db8::1", 0, true, false},
		{"2001:db8::2", 0, true, false},
		{"2001:db8::ffff", 0, true, true}, // the same /64
		{"2001:db8:0:1::1", 0, false, false},
		{"not an address", 0, true, false},
		{"", 0, true, false},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if s.fail {
			l.Failed(s.ip)
		}
		if got := l.Blocked(s.ip); got != s.blocked {
			t.Errorf("step %d (%q): Blocked = %v, want %v", i, s.ip, got, s.blocked)
		}
	}
	l.SetLimits(0, time.Minute)
	if l.Blocked("2001:db8::1") {
		t.Errorf("Max 0 still blocks")
	}
}

// fakeVerifier answers callouts from a table.
type fakeVerifier map[string]Verdict

func (f fakeVerifier) Verify(local, domain string) (Verdict, string) {
	return f[local+"@"+domain], "fake"
}

func TestCalloutVerdicts(t *testing.T) {
	cfg := testConfig()
	cfg.Verifier = fakeVerifier{"bob@example.com": Exists, "ghost@example.com": Unknown, "later@example.com": Unverified}
	replies, _ := converse(t, cfg, Client{}, "EHLO c.example\r\nMAIL FROM:<s@sender.example>\r\n"+
		"RCPT TO:<bob@example.com>\r\nRCPT TO:<ghost@example.com>\r\nRCPT TO:<later@example.com>\r\n"+
		"RCPT TO:<other@a.example.org>\r\nRCPT TO:<postmaster@example.com>\r\nQUIT\r\n")
	want := "220,250,250 2.0.0,250 2.0.0,550 5.1.1,450 4.1.1,250 2.0.0,250 2.0.0,221 2.0.0"
	if got := codes(replies); got != want {
		t.Errorf("replies %s, want %s", got, want)
	}
}
