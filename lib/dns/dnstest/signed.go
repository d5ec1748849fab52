package dnstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Zones are the zones of a DNSSEC test: one signed at test time, one
// left unsigned.
type Zones struct {
	Signed   string   // the signed zone's name, "dane.test."
	Records  []string // its records, zone-file lines with names in full
	Unsigned string   // the unsigned zone's name, "plain.test."
	Plain    []string // its records
	// Corrupt lists owner names in the signed zone whose TLSA records
	// are altered after signing: their signatures fail, and the
	// validator answers SERVFAIL, as for a forged answer.
	Corrupt []string
}

// Signed is a DNSSEC test setup on loopback: the zones served by one
// unbound (auth-zone), and a second unbound, the validating resolver gw
// asks (Addr), that trusts the signed zone's key (a trust anchor of the
// test's own) and sends queries for the two zones to the first. Every
// other name is answered NXDOMAIN locally, never sent anywhere.
//
// The zone is signed by ldnsutils' ldns-keygen and ldns-signzone, which
// scripts/test-peers.sh installs.
type Signed struct {
	Addr string // the validating resolver, host:port
	auth *Server
	val  *Server
}

// StartSigned signs z.Signed, starts both servers, and stops them with
// the test.
func StartSigned(t testing.TB, z Zones) *Signed {
	t.Helper()
	for _, p := range []string{"ldns-keygen", "ldns-signzone"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is missing (scripts/test-peers.sh installs ldnsutils): %v", p, err)
		}
	}
	dir, err := os.MkdirTemp("", "gw-dnssec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	signed, anchor := signZone(t, dir, z)
	plain := filepath.Join(dir, "plain.zone")
	writeZone(t, plain, z.Unsigned, z.Plain)

	s := &Signed{}
	s.auth = startOn(t, freeLoopbackPort, func(port int) string {
		return fmt.Sprintf(`	module-config: "iterator"
	local-zone: "." static
	local-zone: %[1]q transparent
	local-zone: %[3]q transparent
	do-not-query-localhost: yes
	outgoing-interface: 127.0.0.1
auth-zone:
	name: %[1]q
	zonefile: %[2]q
	for-downstream: yes
	for-upstream: no
auth-zone:
	name: %[3]q
	zonefile: %[4]q
	for-downstream: yes
	for-upstream: no
`, z.Signed, signed, z.Unsigned, plain)
	})
	s.val = startOn(t, freeLoopbackPort, func(port int) string {
		return fmt.Sprintf(`	module-config: "validator iterator"
	trust-anchor-file: %[1]q
	val-log-level: 2
	local-zone: "." static
	local-zone: %[2]q transparent
	local-zone: %[3]q transparent
	do-not-query-localhost: no
	outgoing-interface: 127.0.0.1
stub-zone:
	name: %[2]q
	stub-addr: 127.0.0.1@%[4]d
stub-zone:
	name: %[3]q
	stub-addr: 127.0.0.1@%[4]d
`, anchor, z.Signed, z.Unsigned, s.auth.port)
	})
	s.Addr = s.val.Addr
	return s
}

// writeZone writes a zone file: SOA, NS, and the records.
func writeZone(t testing.TB, file, origin string, records []string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 300\n%[1]s IN SOA ns.%[1]s admin.%[1]s 1 3600 600 86400 300\n%[1]s IN NS ns.%[1]s\nns.%[1]s IN A 127.0.0.1\n", origin)
	for _, r := range records {
		b.WriteString(r + "\n")
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// signZone signs z's signed zone with one Ed25519 key (the key signs
// the zone and is the trust anchor), spoils the records of z.Corrupt,
// and returns the signed file and the trust anchor file.
func signZone(t testing.TB, dir string, z Zones) (signed, anchor string) {
	t.Helper()
	zone := filepath.Join(dir, "signed.zone")
	writeZone(t, zone, z.Signed, z.Records)
	// it writes K<zone>+015+<tag>.{key,private,ds} in its working
	// directory, and prints the base name
	kg := exec.Command("ldns-keygen", "-a", "ED25519", "-k", "-r", "/dev/urandom", z.Signed)
	kg.Dir = dir
	out, err := kg.CombinedOutput()
	if err != nil {
		t.Fatalf("ldns-keygen: %v: %s", err, out)
	}
	key := filepath.Join(dir, strings.TrimSpace(string(out)))
	if out, err := exec.Command("ldns-signzone", "-n", "-f", zone+".signed", zone, key).CombinedOutput(); err != nil {
		t.Fatalf("ldns-signzone: %v: %s", err, out)
	}
	signed = zone + ".signed"
	if len(z.Corrupt) > 0 {
		corrupt(t, signed, z.Corrupt)
	}
	return signed, key + ".key"
}

// corrupt flips a bit of the data of the TLSA records at owners.
func corrupt(t testing.TB, file string, owners []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zp := dns.NewZoneParser(bytes.NewReader(b), "", "")
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if tl, isTLSA := rr.(*dns.TLSA); isTLSA {
			for _, o := range owners {
				if strings.EqualFold(dns.Fqdn(o), tl.Hdr.Name) {
					c := []byte(tl.Certificate)
					c[0] ^= 1 // '0'..'9' and 'a'..'f' stay hex
					if c[0] > 'f' || (c[0] > '9' && c[0] < 'a') {
						c[0] ^= 3
					}
					tl.Certificate = string(c)
					n++
				}
			}
		}
		out.WriteString(rr.String() + "\n")
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no TLSA record at %q to corrupt", owners)
	}
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
