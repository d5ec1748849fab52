package arc

import (
	"bytes"
	"context"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gw/lib/dkim"
	"gw/lib/dkim/dkimpytest"
	"gw/lib/dns"
	"gw/lib/dns/dnstest"
)

func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	paths, _ := filepath.Glob("../dkim/testdata/corpus/*.eml")
	if len(paths) == 0 {
		t.Fatal("no corpus")
	}
	out := make(map[string][]byte)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = dkim.ToCRLF(b)
	}
	return out
}

func publish(t *testing.T, srv *dnstest.Server, alg, selector, domain string) crypto.Signer {
	t.Helper()
	k, err := dkim.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.PublicRecord(k)
	srv.Add(t, dkimpytest.TXT(dkim.KeyName(selector, domain), rec))
	return k
}

// TestSealVerifiedByDkimpy: a chain gw starts, and a chain dkimpy starts
// and gw continues, pass in dkimpy's arcverify and in gw; a body changed
// after sealing fails in both.
func TestSealVerifiedByDkimpy(t *testing.T) {
	srv := dnstest.Start(t)
	gwKey := publish(t, srv, dkim.AlgRSA, "arc", "gw.test")
	pyKey := dkimpytest.KeyFile(t, publish(t, srv, dkim.AlgRSA, "py", "lists.test"))
	sealer := &Sealer{Domain: "gw.test", Selector: "arc", Key: gwKey, AuthservID: "mx.gw.test"}
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	ctx := context.Background()
	for name, msg := range corpus(t) {
		// gw is the first hop.
		set, err := sealer.Seal(msg, None, "spf=pass smtp.mailfrom=example.test")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sealed := append(set, msg...)
		if got := dkimpytest.Run(t, srv.Addr, sealed, "arcverify"); !strings.HasPrefix(got, "cv=pass") {
			t.Errorf("%s: dkimpy on gw's first set: %s\n%s", name, got, set)
		}
		if r := v.Verify(ctx, sealed); r.Value != Pass || r.Instances != 1 || r.Sealer != "gw.test" {
			t.Errorf("%s: gw on its own first set: %+v", name, r)
		}

		// dkimpy is the first hop, gw the second.
		withAR := append([]byte("Authentication-Results: lists.test; spf=pass smtp.mailfrom=example.test\r\n"), msg...)
		pySet := dkimpytest.Run(t, srv.Addr, withAR, "arcsign", "py", "lists.test", pyKey, "lists.test")
		fromPy := dkim.ToCRLF([]byte(pySet + "\n" + string(withAR)))
		r := v.Verify(ctx, fromPy)
		if r.Value != Pass || r.Sealer != "lists.test" {
			t.Fatalf("%s: gw on dkimpy's set: %+v\n%s", name, r, pySet)
		}
		set2, err := sealer.Seal(fromPy, r.Value, "arc=pass header.oldest-pass=0")
		if err != nil {
			t.Fatal(err)
		}
		two := append(set2, fromPy...)
		if got := dkimpytest.Run(t, srv.Addr, two, "arcverify"); !strings.HasPrefix(got, "cv=pass") {
			t.Errorf("%s: dkimpy on a chain of two: %s", name, got)
		}
		if r := v.Verify(ctx, two); r.Value != Pass || r.Instances != 2 || r.Sealer != "gw.test" {
			t.Errorf("%s: gw on a chain of two: %+v", name, r)
		}

		// A body changed after the seals.
		tampered := append(append([]byte{}, two...), []byte("added by mallory\r\n")...)
		if got := dkimpytest.Run(t, srv.Addr, tampered, "arcverify"); !strings.HasPrefix(got, "cv=fail") {
			t.Errorf("%s: dkimpy on a changed body: %s", name, got)
		}
		if r := v.Verify(ctx, tampered); r.Value != Fail {
			t.Errorf("%s: gw on a changed body: %+v", name, r)
		}
	}
}

// TestBrokenChains: chains a receiver must fail.
func TestBrokenChains(t *testing.T) {
	srv := dnstest.Start(t)
	key := publish(t, srv, dkim.AlgEd25519, "arc", "gw.test")
	sealer := &Sealer{Domain: "gw.test", Selector: "arc", Key: key, AuthservID: "mx.gw.test"}
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	ctx := context.Background()
	msg := corpus(t)["plain.eml"]
	set, err := sealer.Seal(msg, None, "spf=pass smtp.mailfrom=example.test")
	if err != nil {
		t.Fatal(err)
	}
	one := append(set, msg...)
	if r := v.Verify(ctx, one); r.Value != Pass {
		t.Fatalf("Ed25519 chain: %+v", r)
	}
	two, err := sealer.Seal(one, Pass, "arc=pass")
	if err != nil {
		t.Fatal(err)
	}
	chain2 := append(two, one...)
	if r := v.Verify(ctx, chain2); r.Value != Pass || r.Instances != 2 {
		t.Fatalf("two Ed25519 sets: %+v", r)
	}
	cases := map[string][]byte{
		"seal 1 changed":        bytes.Replace(chain2, []byte("i=1; a=ed25519-sha256; cv=none"), []byte("i=1; a=ed25519-sha256;  cv=pass"), 1),
		"AAR 1 changed":         bytes.Replace(chain2, []byte("spf=pass smtp.mailfrom=example.test"), []byte("spf=pass smtp.mailfrom=evil.test"), 1),
		"set 1 removed":         bytes.Replace(chain2, set, nil, 1),
		"subject changed":       bytes.Replace(chain2, []byte("Subject: Quarterly"), []byte("Subject: Urgent"), 1),
		"instance 51":           append([]byte("ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.test; s=x; b=AA==\r\n"), chain2...),
		"duplicate seal":        append(bytes.SplitAfterN(two, []byte("\r\n"), 2)[0], chain2...),
		"not ARC at all, i=bad": append([]byte("ARC-Seal: i=x; cv=none\r\n"), msg...),
	}
	for name, m := range cases {
		if r := v.Verify(ctx, m); r.Value != Fail {
			t.Errorf("%s: %+v, want fail", name, r)
		}
	}
	if r := v.Verify(ctx, msg); r.Value != None {
		t.Errorf("no ARC: %+v", r)
	}
	// Sealing after a failed chain: cv=fail, the seal covers its own set.
	broken := cases["subject changed"]
	set3, err := sealer.Seal(broken, Fail, "arc=fail")
	if err != nil || !bytes.Contains(set3, []byte("i=3; a=ed25519-sha256; cv=fail")) {
		t.Fatalf("seal over a failed chain: %s, %v", set3, err)
	}
	if r := v.Verify(ctx, append(set3, broken...)); r.Value != Fail {
		t.Errorf("chain with a cv=fail seal: %+v", r)
	}
	// Wrong cv for the position is the caller's error.
	if _, err := sealer.Seal(msg, Pass, ""); err == nil {
		t.Error("cv=pass on instance 1 sealed")
	}
	if _, err := sealer.Seal(one, None, ""); err == nil {
		t.Error("cv=none on instance 2 sealed")
	}
}

// TestOldestPass: a list that changes the message after a first sealer
// signed it, and seals what it sends, leaves a chain that passes with
// header.oldest-pass naming the list's instance; dkimpy's own check of
// each message signature agrees. An untouched chain's oldest pass is 0.
func TestOldestPass(t *testing.T) {
	srv := dnstest.Start(t)
	pyKey := dkimpytest.KeyFile(t, publish(t, srv, dkim.AlgRSA, "py", "origin.test"))
	list := &Sealer{Domain: "lists.test", Selector: "arc", Key: publish(t, srv, dkim.AlgRSA, "arc", "lists.test"), AuthservID: "lists.test"}
	relay := &Sealer{Domain: "relay.test", Selector: "arc", Key: publish(t, srv, dkim.AlgEd25519, "arc", "relay.test"), AuthservID: "relay.test"}
	v := &Verifier{Resolver: dns.New(srv.Addr)}
	ctx := context.Background()
	msg := append([]byte("Authentication-Results: origin.test; spf=pass smtp.mailfrom=example.test\r\n"), corpus(t)["plain.eml"]...)

	// instance 1: dkimpy, the first hop
	pySet := dkimpytest.Run(t, srv.Addr, msg, "arcsign", "py", "origin.test", pyKey, "origin.test")
	one := dkim.ToCRLF([]byte(pySet + "\n" + string(msg)))
	if r := v.Verify(ctx, one); r.Value != Pass || r.OldestPass != 0 {
		t.Fatalf("dkimpy's first set: %+v", r)
	}

	// instance 2: the list found the chain passing, added its footer and
	// a subject tag, and sealed the message it sends
	changed := bytes.Replace(one, []byte("Subject: "), []byte("Subject: [list] "), 1)
	changed = append(changed, []byte("-- \r\nlist footer\r\n")...)
	set2, err := list.Seal(changed, Pass, "arc=pass")
	if err != nil {
		t.Fatal(err)
	}
	two := append(set2, changed...)
	r := v.Verify(ctx, two)
	if r.Value != Pass || r.Instances != 2 || r.OldestPass != 2 {
		t.Errorf("list changed the message after instance 1: %+v, want pass with oldest-pass 2", r)
	}
	if got := dkimpytest.Run(t, srv.Addr, two, "arcverify"); !strings.HasPrefix(got, "cv=pass") {
		t.Errorf("dkimpy on the list's chain: %s", got)
	}
	if got := dkimpytest.Run(t, srv.Addr, two, "arcams"); got != "i=2 ams=pass\ni=1 ams=fail" {
		t.Errorf("dkimpy's message signatures of the list's chain:\n%s", got)
	}

	// instance 3: a relay passes it on unchanged; the oldest pass stays
	set3, err := relay.Seal(two, Pass, "arc=pass header.oldest-pass=2")
	if err != nil {
		t.Fatal(err)
	}
	three := append(set3, two...)
	if r := v.Verify(ctx, three); r.Value != Pass || r.Instances != 3 || r.OldestPass != 2 {
		t.Errorf("relayed unchanged: %+v, want pass with oldest-pass 2", r)
	}

	// the list on the untouched chain: every signature holds
	set2b, err := list.Seal(one, Pass, "arc=pass")
	if err != nil {
		t.Fatal(err)
	}
	untouched := append(set2b, one...)
	if r := v.Verify(ctx, untouched); r.Value != Pass || r.OldestPass != 0 {
		t.Errorf("untouched chain of two: %+v, want oldest-pass 0", r)
	}
	if got := dkimpytest.Run(t, srv.Addr, untouched, "arcams"); got != "i=2 ams=pass\ni=1 ams=pass" {
		t.Errorf("dkimpy's message signatures of the untouched chain:\n%s", got)
	}

	// a failing chain has no oldest pass to tell
	tampered := append(append([]byte{}, three...), []byte("added by mallory\r\n")...)
	if r := v.Verify(ctx, tampered); r.Value != Fail || r.OldestPass != 0 {
		t.Errorf("body changed after the last seal: %+v", r)
	}
}
