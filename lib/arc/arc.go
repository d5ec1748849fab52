// Package arc verifies and seals ARC chains (RFC 8617): the record each
// intermediary adds of what it found when the message reached it, so that
// a receiver behind forwarders can trust authentication results its own
// checks can no longer reproduce (a mailing list broke DKIM, a forwarder
// broke SPF).
//
// No Go library does ARC; it is built here on lib/dkim's primitives: the
// ARC-Message-Signature is a DKIM signature under another name, the
// ARC-Seal a signature over the ARC sets in instance order, both relaxed.
package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gw/lib/dkim"
	"gw/lib/dns"
)

// Chain validation values (cv=) and ARC results in Authentication-Results.
const (
	None = "none"
	Pass = "pass"
	Fail = "fail"
)

// MaxInstance is the highest instance an ARC set may have (RFC 8617 §4.2.1).
const MaxInstance = 50

// Header field names of an ARC set.
const (
	FieldAAR  = "ARC-Authentication-Results"
	FieldAMS  = "ARC-Message-Signature"
	FieldSeal = "ARC-Seal"
)

// Set is one instance's three fields.
type Set struct {
	Instance int
	AAR      dkim.Field
	AMS      dkim.Field
	Seal     dkim.Field
}

// Result is a chain's validation.
type Result struct {
	Value     string // None, Pass or Fail
	Reason    string // why, when fail
	Instances int    // the highest instance
	Sealer    string // d= of the highest ARC-Seal: who passed the message on last
	RemoteIP  string // not filled here: the listener knows it
	// OldestPass is, for a chain that passes, the lowest instance whose
	// ARC-Message-Signature still verifies, counting down from the newest
	// and stopping at the first that does not; 0 when all of them do
	// (RFC 8617 §5.2 step 5, the arc method's header.oldest-pass). An
	// intermediary after it changed the message: a receiver learns how
	// far back the message is as its first sealer saw it.
	OldestPass int
}

// sets collects the ARC sets of a header, in instance order 1..N. Missing
// or duplicated fields, instances out of range or with gaps are errors
// (RFC 8617 §5.2 step 2 and 3: the chain fails).
func sets(fields []dkim.Field) ([]Set, error) {
	byInstance := make(map[int]*Set)
	max := 0
	for _, f := range fields {
		name := strings.ToLower(f.Name)
		if name != strings.ToLower(FieldAAR) && name != strings.ToLower(FieldAMS) && name != strings.ToLower(FieldSeal) {
			continue
		}
		i, err := instance(f.Value())
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.Name, err)
		}
		s := byInstance[i]
		if s == nil {
			s = &Set{Instance: i}
			byInstance[i] = s
		}
		var slot *dkim.Field
		switch name {
		case strings.ToLower(FieldAAR):
			slot = &s.AAR
		case strings.ToLower(FieldAMS):
			slot = &s.AMS
		default:
			slot = &s.Seal
		}
		if slot.Raw != "" {
			return nil, fmt.Errorf("two %s fields of instance %d", f.Name, i)
		}
		*slot = f
		if i > max {
			max = i
		}
	}
	out := make([]Set, 0, max)
	for i := 1; i <= max; i++ {
		s := byInstance[i]
		if s == nil || s.AAR.Raw == "" || s.AMS.Raw == "" || s.Seal.Raw == "" {
			return nil, fmt.Errorf("ARC set %d of %d is incomplete", i, max)
		}
		out = append(out, *s)
	}
	return out, nil
}

// instance reads the i= tag that starts every ARC field's value. The AAR's
// value is i= and then Authentication-Results' syntax, not a tag list:
// only its first part is read as a tag.
func instance(value string) (int, error) {
	first, _, _ := strings.Cut(value, ";")
	k, v, ok := strings.Cut(first, "=")
	if !ok || strings.TrimSpace(k) != "i" {
		return 0, errors.New("does not start with i=")
	}
	i, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || i < 1 || i > MaxInstance {
		return 0, fmt.Errorf("instance %q outside 1..%d", strings.TrimSpace(v), MaxInstance)
	}
	return i, nil
}

// Verifier validates chains with keys from one resolver.
type Verifier struct {
	Resolver *dns.Resolver
}

// Verify validates a CRLF message's ARC chain (RFC 8617 §5.2): none
// without ARC fields; pass when every seal verifies, the newest message
// signature verifies and the seals' cv= values are coherent; fail
// otherwise.
func (v *Verifier) Verify(ctx context.Context, msg []byte) Result {
	fields, body, err := dkim.Split(msg)
	if err != nil {
		return Result{Value: Fail, Reason: err.Error()}
	}
	chain, err := sets(fields)
	if err != nil {
		return Result{Value: Fail, Reason: err.Error()}
	}
	if len(chain) == 0 {
		return Result{Value: None}
	}
	n := len(chain)
	r := Result{Instances: n}
	if tags, err := dkim.ParseTags(chain[n-1].Seal.Value()); err == nil {
		r.Sealer = strings.ToLower(dkim.StripWSP(tags["d"]))
	}
	fail := func(format string, a ...any) Result {
		r.Value, r.Reason = Fail, fmt.Sprintf(format, a...)
		return r
	}
	for _, s := range chain {
		tags, err := dkim.ParseTags(s.Seal.Value())
		if err != nil {
			return fail("ARC-Seal %d: %v", s.Instance, err)
		}
		want := Pass
		if s.Instance == 1 {
			want = None
		}
		if cv := tags["cv"]; cv != want {
			return fail("ARC-Seal %d says cv=%s", s.Instance, cv)
		}
	}
	if err := v.verifyAMS(ctx, fields, body, chain[n-1]); err != nil {
		return fail("ARC-Message-Signature %d: %v", n, err)
	}
	for i := n; i >= 1; i-- {
		if err := v.verifySeal(ctx, chain[:i]); err != nil {
			return fail("ARC-Seal %d: %v", i, err)
		}
	}
	r.Value = Pass
	r.OldestPass = v.oldestPass(ctx, fields, body, chain)
	return r
}

// oldestPass checks the older message signatures of a chain whose newest
// one verified, newest first (RFC 8617 §5.2 step 5). It stops at the first
// that fails: what an older sealer signed was changed after it, and the
// signatures before that one say nothing of the message as it now is.
func (v *Verifier) oldestPass(ctx context.Context, fields []dkim.Field, body []byte, chain []Set) int {
	oldest := len(chain)
	for i := len(chain) - 1; i >= 1; i-- {
		if v.verifyAMS(ctx, fields, body, chain[i-1]) != nil {
			return oldest
		}
		oldest = i
	}
	return 0
}

// verifyAMS checks one ARC-Message-Signature as DKIM checks a signature.
func (v *Verifier) verifyAMS(ctx context.Context, fields []dkim.Field, body []byte, s Set) error {
	tags, err := dkim.ParseTags(s.AMS.Value())
	if err != nil {
		return err
	}
	for _, t := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[t]; !ok {
			return fmt.Errorf("no %s= tag", t)
		}
	}
	hc, bc, ok := dkim.ParseCanon(dkim.StripWSP(tags["c"]))
	if !ok {
		return fmt.Errorf("unknown canonicalisation c=%s", tags["c"])
	}
	names := strings.Split(dkim.StripWSP(tags["h"]), ":")
	for _, n := range names {
		if strings.EqualFold(n, FieldSeal) {
			return errors.New("h= lists ARC-Seal")
		}
	}
	bh, err := base64.StdEncoding.DecodeString(dkim.StripWSP(tags["bh"]))
	if err != nil {
		return fmt.Errorf("bh= is not base64: %v", err)
	}
	if got := dkim.BodyHash(crypto.SHA256, bc, body); string(got) != string(bh) {
		return errors.New("body hash did not verify")
	}
	data := dkim.HeaderHashInput(fields, names, hc, s.AMS.Raw)
	return v.check(ctx, tags, data)
}

// verifySeal checks the newest seal of chain, which covers every set of
// chain in instance order (RFC 8617 §5.1.1).
func (v *Verifier) verifySeal(ctx context.Context, chain []Set) error {
	last := chain[len(chain)-1]
	tags, err := dkim.ParseTags(last.Seal.Value())
	if err != nil {
		return err
	}
	if _, ok := tags["h"]; ok {
		return errors.New("h= tag in a seal")
	}
	return v.check(ctx, tags, sealInput(chain))
}

// sealInput is what an ARC-Seal signs: every set's AAR, AMS and seal,
// relaxed, instance 1 first; the last seal with b= empty and no CRLF.
func sealInput(chain []Set) []byte {
	var b strings.Builder
	for i, s := range chain {
		b.WriteString(dkim.RelaxedHeader(s.AAR.Raw))
		b.WriteString(dkim.RelaxedHeader(s.AMS.Raw))
		if i < len(chain)-1 {
			b.WriteString(dkim.RelaxedHeader(s.Seal.Raw))
		} else {
			b.WriteString(strings.TrimSuffix(dkim.RelaxedHeader(dkim.EmptyB(s.Seal.Raw)), "\r\n"))
		}
	}
	return []byte(b.String())
}

// check verifies b= over data with the key d= and s= name.
func (v *Verifier) check(ctx context.Context, tags map[string]string, data []byte) error {
	alg := dkim.StripWSP(tags["a"])
	keyAlg, ok := map[string]string{"rsa-sha256": dkim.AlgRSA, "ed25519-sha256": dkim.AlgEd25519}[alg]
	if !ok {
		return fmt.Errorf("algorithm a=%s", alg)
	}
	sig, err := base64.StdEncoding.DecodeString(dkim.StripWSP(tags["b"]))
	if err != nil {
		return fmt.Errorf("b= is not base64: %v", err)
	}
	key, err := dkim.LookupKey(ctx, v.Resolver, dkim.StripWSP(tags["s"]), dkim.StripWSP(tags["d"]))
	if err != nil {
		return err
	}
	if key.Alg != keyAlg {
		return fmt.Errorf("a=%s with a %s key", alg, key.Alg)
	}
	sum := sha256.Sum256(data)
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		err = rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, sum[:], sig) {
			err = errors.New("Ed25519 signature mismatch")
		}
	}
	if err != nil {
		return fmt.Errorf("signature did not verify: %v", err)
	}
	return nil
}
