package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/dns/dnstest"
	"gw/lib/qmtp"
)

// TestSMTPDRemoteHostAsTcpserver: a tcp.smtp moved from tcpserver to
// gw-smtpd --listen keeps its host rules. The same rules and the same
// loopback DNS serve the real tcpserver (running gw-smtpd) and gw-smtpd
// listening itself; each client, from its own address, must meet the
// same door at both, under -h (the default), -H and -p.
func TestSMTPDRemoteHostAsTcpserver(t *testing.T) {
	need(t, "tcpserver")
	need(t, "tcprules")
	// tcpserver asks port 53 of DNSCACHEIP; gw asks GW_DNS
	dns := dnstest.StartPort53(t)
	dns.Add(t,
		"2.0.0.127.in-addr.arpa. PTR bad.gw.test.", "bad.gw.test. A 127.0.0.2",
		"3.0.0.127.in-addr.arpa. PTR MX.Spam.Test.", "mx.spam.test. A 127.0.0.3",
		"4.0.0.127.in-addr.arpa. PTR good.gw.test.", "good.gw.test. A 127.0.0.4",
		// a spammer's PTR claims a name whose address is elsewhere
		"5.0.0.127.in-addr.arpa. PTR liar.spam.test.", "liar.spam.test. A 127.0.0.99",
		// a byte no host name has: a space
		`6.0.0.127.in-addr.arpa. PTR odd\032name.gw.test.`, `odd\032name.gw.test. A 127.0.0.6`,
		// 127.0.0.7 has no PTR at all
	)
	rules := `=bad.gw.test:deny
=.spam.test:deny
=odd\040name.gw.test:deny
:allow
`
	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"-h by default", nil, `
127.0.0.2 closed
127.0.0.3 closed
127.0.0.4 greeted, TCPREMOTEHOST=good.gw.test
127.0.0.5 closed
127.0.0.6 closed
127.0.0.7 greeted, no TCPREMOTEHOST
`},
		{"-H", []string{"-H"}, `
127.0.0.2 greeted, no TCPREMOTEHOST
127.0.0.3 greeted, no TCPREMOTEHOST
127.0.0.4 greeted, no TCPREMOTEHOST
127.0.0.5 greeted, no TCPREMOTEHOST
127.0.0.6 greeted, no TCPREMOTEHOST
127.0.0.7 greeted, no TCPREMOTEHOST
`},
		{"-p", []string{"-p"}, `
127.0.0.2 closed
127.0.0.3 closed
127.0.0.4 greeted, TCPREMOTEHOST=good.gw.test
127.0.0.5 greeted, no TCPREMOTEHOST
127.0.0.6 closed
127.0.0.7 greeted, no TCPREMOTEHOST
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tcpserver := newSMTPDInstance(t, nil)
			addr := tcpserver.hostsUnderTcpserver(t, rules, dns.IP(), c.flags...)
			if got := doors(t, tcpserver, addr); got != c.want {
				t.Errorf("tcpserver %v:\n%s\nwant:%s", c.flags, got, c.want)
			}
			gw := newSMTPDInstance(t, nil)
			db := filepath.Join(gw.dir, "tcp.smtp.db")
			compile := exec.Command(bin("gw-tcprules"), db, db+".tmp")
			compile.Stdin = strings.NewReader(rules)
			if out, err := compile.CombinedOutput(); err != nil {
				t.Fatalf("gw-tcprules: %v\n%s", err, out)
			}
			addr = gw.standalone(t, []string{"GW_DNS=" + dns.Addr}, append([]string{"--acl", db}, c.flags...)...)
			if got := doors(t, gw, addr); got != c.want {
				t.Errorf("gw-smtpd --listen %v:\n%s\nwant:%s", c.flags, got, c.want)
			}
		})
	}
}

// hostsUnderTcpserver runs gw-smtpd under tcpserver with flags, host
// names from the DNS server at dnsIP, and rules compiled by tcprules.
func (in *smtpdInstance) hostsUnderTcpserver(t *testing.T, rules, dnsIP string, flags ...string) string {
	t.Helper()
	cdb := filepath.Join(in.dir, "tcp.smtp.cdb")
	c := exec.Command("tcprules", cdb, cdb+".tmp")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("tcprules: %v\n%s", err, out)
	}
	argv := append([]string{"-1", "-R", "-l", "gw.example.net", "-x", cdb}, flags...)
	argv = append(argv, "127.0.0.1", "0", bin("gw-smtpd"), "--control-dir", in.control)
	cmd := exec.Command("tcpserver", argv...)
	cmd.Env = in.env("DNSCACHEIP=" + dnsIP)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in.start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("tcpserver printed no port: %v", err)
	}
	return "127.0.0.1:" + strings.TrimSpace(port)
}

// doors connects to addr from 127.0.0.2 to 127.0.0.7 and tells, a line
// each, whether the client was greeted and with what TCPREMOTEHOST the
// session started (gw-smtpd's connect line logs it).
func doors(t *testing.T, in *smtpdInstance, addr string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("\n")
	for i := 2; i <= 7; i++ {
		from := fmt.Sprintf("127.0.0.%d", i)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(conn)
		greeting, _ := r.ReadString('\n')
		if !strings.HasPrefix(greeting, "220 ") {
			conn.Close()
			fmt.Fprintf(&b, "%s closed\n", from)
			continue
		}
		fmt.Fprintf(conn, "QUIT\r\n")
		r.ReadString('\n')
		conn.Close()
		host := connectHost(t, in, from)
		if host == "" {
			fmt.Fprintf(&b, "%s greeted, no TCPREMOTEHOST\n", from)
		} else {
			fmt.Fprintf(&b, "%s greeted, TCPREMOTEHOST=%s\n", from, host)
		}
	}
	return b.String()
}

// connectHost returns the host field of the session's connect line for
// the client at ip, waiting for the line to be written.
func connectHost(t *testing.T, in *smtpdInstance, ip string) string {
	t.Helper()
	line := regexp.MustCompile(`(?m)^.* connect .* ip=` + regexp.QuoteMeta(ip) + ` .*$`)
	host := regexp.MustCompile(` host=("(?:[^"\\]|\\.)*"|\S+)`)
	for range 100 {
		log, _ := os.ReadFile(in.log)
		if l := line.FindString(string(log)); l != "" {
			if m := host.FindStringSubmatch(l); m != nil {
				return m[1]
			}
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no connect line for %s", ip)
	return ""
}

// TestQMTPDHostRules: gw-qmtpd --listen knows its clients by name too. A
// host rule refuses a spam domain's client and lets a named one relay;
// with -H neither rule matches and the named client may not relay.
func TestQMTPDHostRules(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Add(t,
		"3.0.0.127.in-addr.arpa. PTR mx.spam.test.", "mx.spam.test. A 127.0.0.3",
		"4.0.0.127.in-addr.arpa. PTR relay.gw.test.", "relay.gw.test. A 127.0.0.4")
	in := newSMTPDInstance(t, map[string]string{"rcpthosts": "example.net\n"})
	db := filepath.Join(in.dir, "tcp.qmtp.db")
	compile := exec.Command(bin("gw-tcprules"), db, db+".tmp")
	compile.Stdin = strings.NewReader("=.spam.test:deny\n=relay.gw.test:allow,RELAYCLIENT=\"\"\n:allow\n")
	if out, err := compile.CombinedOutput(); err != nil {
		t.Fatalf("gw-tcprules: %v\n%s", err, out)
	}
	env := []string{"GW_DNS=" + dns.Addr}
	pkg := qmtpPackage("Subject: hi\n\nhello\n", "a@example.org", "b@elsewhere.example")

	addr := in.qmtpdStandalone(t, env, "--acl", db)
	if got := qmtpFrom(t, addr, "127.0.0.3", pkg); got != "" {
		t.Errorf("mx.spam.test (=.spam.test:deny) got %q, want the connection closed", got)
	}
	if got := qmtpFrom(t, addr, "127.0.0.4", pkg); !strings.HasPrefix(got, "K") {
		t.Errorf("relay.gw.test (=relay.gw.test:allow,RELAYCLIENT) got %q, want K", got)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || !strings.Contains(in.body(t, msgs[0]), "Received: from relay.gw.test (127.0.0.4)\n") {
		t.Fatalf("%d messages; want one, received from relay.gw.test", len(msgs))
	}

	addr = in.qmtpdStandalone(t, env, "--acl", db, "-H")
	if got := qmtpFrom(t, addr, "127.0.0.3", pkg); !strings.HasPrefix(got, "D") {
		t.Errorf("with -H, mx.spam.test got %q; want no host rule, so the D of rcpthosts", got)
	}
	if got := qmtpFrom(t, addr, "127.0.0.4", pkg); !strings.HasPrefix(got, "D") {
		t.Errorf("with -H, relay.gw.test got %q; want no RELAYCLIENT, so the D of rcpthosts", got)
	}
}

// qmtpFrom sends one package to addr from the loopback address from and
// returns the response, "" when the server closed without one.
func qmtpFrom(t *testing.T, addr, from, pkg string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, pkg)
	conn.(*net.TCPConn).CloseWrite()
	s, _, err := qmtp.ReadString(bufio.NewReader(conn), qmtp.MaxResponse, qmtp.MaxResponse)
	if err != nil {
		return ""
	}
	return string(s)
}
