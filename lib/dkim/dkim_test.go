package dkim

import (
	"bytes"
	"context"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

// corpus is the committed set of realistic messages, LF-ended as gw's
// queue keeps them.
func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	paths, _ := filepath.Glob("testdata/corpus/*.eml")
	if len(paths) == 0 {
		t.Fatal("no corpus")
	}
	out := make(map[string][]byte)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// publish makes a key for domain and selector, publishes its record on
// srv and returns it.
func publish(t *testing.T, srv *dnstest.Server, alg, selector, domain string) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := PublicRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	srv.Add(t, dkimpytest.TXT(KeyName(selector, domain), rec))
	return k
}

// TestSignVerifiedByDkimpy: every corpus message gw signs, with RSA-2048
// and with Ed25519, verifies in dkimpy, and in gw, both on the CRLF form
// and (for gw) on the LF form the queue holds.
func TestSignVerifiedByDkimpy(t *testing.T) {
	srv := dnstest.Start(t)
	keys := map[string][]*PrivateKey{"example.test": {
		{Domain: "example.test", Selector: "rsa2026", Signer: publish(t, srv, AlgRSA, "rsa2026", "example.test")},
		{Domain: "example.test", Selector: "ed2026", Signer: publish(t, srv, AlgEd25519, "ed2026", "example.test")},
	}}
	signer := NewSigner(keys)
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	for name, msg := range corpus(t) {
		crlf := ToCRLF(msg)
		sigs, err := signer.Sign(crlf)
		if err != nil {
			t.Fatalf("%s: Sign: %v", name, err)
		}
		if n := bytes.Count(sigs, []byte("DKIM-Signature:")); n != 2 {
			t.Fatalf("%s: %d signatures, want 2:\n%s", name, n, sigs)
		}
		for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "h=From:From:"} {
			if !bytes.Contains(bytes.ReplaceAll(sigs, []byte("\r\n "), nil), []byte(want)) {
				t.Errorf("%s: signatures lack %s:\n%s", name, want, sigs)
			}
		}
		signed := append(append([]byte{}, sigs...), crlf...)
		if got := dkimpytest.Run(t, srv.Addr, signed, "verify"); got != "pass\npass" {
			t.Errorf("%s: dkimpy says %q, want pass for both signatures\n%s", name, got, signed)
		}
		for _, form := range [][]byte{signed, ToCRLF(append(append([]byte{}, sigs...), msg...))} {
			res, err := v.Verify(context.Background(), form)
			if err != nil || len(res) != 2 || res[0].Value != Pass || res[1].Value != Pass {
				t.Errorf("%s: gw verifies its own signatures: %+v, %v", name, res, err)
			}
		}
		// A changed body, and a second From added below, break both.
		tampered := bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\n\r\nP.S. send money\r\n"), 1)
		fromAdded := append(append([]byte{}, sigs...), append([]byte("From: mallory@evil.test\r\n"), crlf...)...)
		for what, m := range map[string][]byte{"body changed": tampered, "From added": fromAdded} {
			if got := dkimpytest.Run(t, srv.Addr, m, "verify"); strings.Contains(got, "pass") {
				t.Errorf("%s, %s: dkimpy says %q", name, what, got)
			}
			res, _ := v.Verify(context.Background(), m)
			for _, r := range res {
				if r.Value == Pass {
					t.Errorf("%s, %s: gw passes %+v", name, what, r)
				}
			}
		}
	}
}

// TestVerifyDkimpySigned: dkimpy's RSA and Ed25519 signatures verify in gw.
func TestVerifyDkimpySigned(t *testing.T) {
	srv := dnstest.Start(t)
	rsaKey := dkimpytest.KeyFile(t, publish(t, srv, AlgRSA, "py-rsa", "example.test"))
	edKey := dkimpytest.KeyFile(t, publish(t, srv, AlgEd25519, "py-ed", "example.test"))
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	for name, msg := range corpus(t) {
		crlf := ToCRLF(msg)
		rsaSig := dkimpytest.Run(t, srv.Addr, crlf, "sign", "py-rsa", "example.test", rsaKey, "rsa-sha256")
		edSig := dkimpytest.Run(t, srv.Addr, crlf, "sign", "py-ed", "example.test", edKey, "ed25519-sha256")
		signed := ToCRLF([]byte(edSig + "\n" + rsaSig + "\n" + string(crlf)))
		res, err := v.Verify(context.Background(), signed)
		if err != nil || len(res) != 2 {
			t.Fatalf("%s: %+v, %v", name, res, err)
		}
		for _, r := range res {
			if r.Value != Pass || r.Domain != "example.test" || r.Identifier != "@example.test" {
				t.Errorf("%s: %+v, want pass", name, r)
			}
		}
		if res[0].Alg != "ed25519-sha256" || res[1].Alg != "rsa-sha256" || res[0].Selector != "py-ed" || len(res[0].B) != 8 {
			t.Errorf("%s: results not in header order: %+v", name, res)
		}
	}
}

// TestVerifyOutcomes: the answers a receiver meets besides pass.
func TestVerifyOutcomes(t *testing.T) {
	srv := dnstest.Start(t)
	key := publish(t, srv, AlgEd25519, "s1", "example.test")
	srv.Add(t, `revoked._domainkey.example.test. TXT "v=DKIM1; k=ed25519; p="`)
	srv.Fail("_domainkey.dead.test.")
	msg := ToCRLF(corpus(t)["plain.eml"])
	sign := func(domain, selector string) string {
		sig, err := SignWith(msg, domain, selector, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(sig)
	}
	ctx := context.Background()
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	cases := []struct {
		name, sigs, want string
	}{
		{"no key", sign("example.test", "nokey"), PermError},
		{"revoked", sign("example.test", "revoked"), PermError},
		{"DNS down", sign("dead.test", "s1"), TempError},
		{"l= tag", strings.Replace(sign("example.test", "s1"), "v=1;", "v=1; l=3;", 1), Fail},
		{"garbage", "DKIM-Signature: this is not a tag list\r\n", PermError},
	}
	for _, c := range cases {
		res, err := v.Verify(ctx, append([]byte(c.sigs), msg...))
		if err != nil || len(res) != 1 || res[0].Value != c.want {
			t.Errorf("%s: %+v, %v; want %s", c.name, res, err, c.want)
		}
	}
	// More signatures than the limit: the first are checked, the rest
	// reported as not checked.
	var many []byte
	for i := 0; i < 7; i++ {
		many = append(many, sign("example.test", "s1")...)
	}
	res, err := (&Verifier{Resolver: dns.New(srv.Addr), MaxSignatures: 3}).Verify(ctx, append(many, msg...))
	if err != nil || len(res) != 7 || res[2].Value != Pass || res[3].Value != Policy || res[6].Value != Policy {
		t.Errorf("7 signatures, limit 3: %+v, %v", res, err)
	}
	if res, err := v.Verify(ctx, msg); err != nil || len(res) != 0 {
		t.Errorf("unsigned: %+v, %v", res, err)
	}
}

// TestKeySizeLimits: keys outside RFC 8301's range are refused, at
// verification and at loading.
func TestKeySizeLimits(t *testing.T) {
	// An 8192-bit key is committed: making one takes a minute of CPU.
	big, err := os.ReadFile("testdata/rsa8192.pub.b64")
	if err != nil {
		t.Fatal(err)
	}
	for bits, p := range map[int]string{512: rsaPublicB64(t, 512), 8192: string(big)} {
		rec := "v=DKIM1; k=rsa; p=" + p
		if _, err := ParseKeyRecord(rec); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("%d-bit key record: %v, want refused", bits, err)
		}
	}
	if _, err := ParseKeyRecord("v=DKIM1; k=rsa; p=" + rsaPublicB64(t, 2048)); err != nil {
		t.Errorf("2048-bit key record: %v", err)
	}
	if _, err := ParseKey(rsaPrivatePEM(t, 1024)); err == nil {
		t.Error("1024-bit signing key accepted")
	}
}
