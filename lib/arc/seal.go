package arc

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gw/lib/dkim"
)

// SignedFields are the fields an ARC-Message-Signature covers, when
// present: those that say who wrote the message, to whom and what it is,
// and its DKIM signatures, whose breakage a later hop may want to trace.
var SignedFields = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To",
	"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "DKIM-Signature",
}

// Sealer adds this gateway's ARC set.
type Sealer struct {
	Domain     string
	Selector   string
	Key        crypto.Signer
	AuthservID string
	Now        func() time.Time // nil: time.Now
}

// ErrChainFull says a message already has MaxInstance ARC sets: it is
// passed on without a new one (RFC 8617 §5.1).
var ErrChainFull = errors.New("ARC chain already has 50 sets")

// Seal returns the new ARC set's fields, each ending CRLF, seal first, to
// be put on top of the CRLF message. cv is the incoming chain's
// validation (Verify); results are this gateway's authentication
// results for the message, as they follow the authserv-id in its
// Authentication-Results ("spf=pass smtp.mailfrom=…; dkim=…; arc=…").
// After a failed chain the seal covers only the new set (RFC 8617 §5.1.2):
// the broken sets are kept for the record but vouched for by no one.
func (s *Sealer) Seal(msg []byte, cv, results string) ([]byte, error) {
	fields, body, err := dkim.Split(msg)
	if err != nil {
		return nil, err
	}
	chain, err := sets(fields)
	if err != nil && cv != Fail {
		return nil, fmt.Errorf("incoming chain is invalid (%v) yet cv=%s", err, cv)
	}
	n := len(chain) + 1
	if err != nil {
		// an unreadable chain: number after the highest instance present
		n = highest(fields) + 1
	}
	if n > MaxInstance {
		return nil, ErrChainFull
	}
	switch {
	case n == 1 && cv != None, n > 1 && cv == None:
		return nil, fmt.Errorf("cv=%s for instance %d", cv, n)
	}
	alg, err := algName(s.Key)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := strconv.FormatInt(now().Unix(), 10)
	i := strconv.Itoa(n)

	aar := dkim.Field{Name: FieldAAR, Raw: FieldAAR + ": i=" + i + "; " + s.AuthservID + ";\r\n " + strings.TrimSpace(results)}
	bh := base64.StdEncoding.EncodeToString(dkim.BodyHash(crypto.SHA256, "relaxed", body))
	ams := dkim.Field{Name: FieldAMS, Raw: FieldAMS + ": i=" + i + "; a=" + alg + "; c=relaxed/relaxed; d=" + s.Domain +
		"; s=" + s.Selector + "; t=" + t + ";\r\n h=" + strings.Join(present(fields, SignedFields), ":") + ";\r\n bh=" + bh + ";\r\n b="}
	// The AMS signs the message as it will be, with the new AAR on top.
	withAAR := append([]dkim.Field{aar}, fields...)
	sig, err := s.sign(dkim.HeaderHashInput(withAAR, present(fields, SignedFields), "relaxed", ams.Raw))
	if err != nil {
		return nil, err
	}
	ams.Raw += fold(sig)

	seal := dkim.Field{Name: FieldSeal, Raw: FieldSeal + ": i=" + i + "; a=" + alg + "; cv=" + cv + "; d=" + s.Domain +
		"; s=" + s.Selector + "; t=" + t + ";\r\n b="}
	covered := append(chain, Set{Instance: n, AAR: aar, AMS: ams, Seal: seal})
	if cv == Fail {
		covered = covered[len(covered)-1:]
	}
	sig, err = s.sign(sealInput(covered))
	if err != nil {
		return nil, err
	}
	seal.Raw += fold(sig)
	return []byte(seal.Raw + "\r\n" + ams.Raw + "\r\n" + aar.Raw + "\r\n"), nil
}

// present keeps the names of fields the header has, once each: an ARC
// signature lists what it covers, not what it forbids.
func present(fields []dkim.Field, names []string) []string {
	var out []string
	for _, n := range names {
		for _, f := range fields {
			if strings.EqualFold(f.Name, n) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

func highest(fields []dkim.Field) int {
	max := 0
	for _, f := range fields {
		for _, n := range []string{FieldAAR, FieldAMS, FieldSeal} {
			if strings.EqualFold(f.Name, n) {
				if i, err := instance(f.Value()); err == nil && i > max {
					max = i
				}
			}
		}
	}
	return max
}

func algName(k crypto.Signer) (string, error) {
	switch (&dkim.PrivateKey{Signer: k}).Alg() {
	case dkim.AlgEd25519:
		return "ed25519-sha256", nil
	case dkim.AlgRSA:
		return "rsa-sha256", nil
	}
	return "", fmt.Errorf("key of type %T", k)
}

func (s *Sealer) sign(data []byte) (string, error) {
	sum := crypto.SHA256.New()
	sum.Write(data)
	digest := sum.Sum(nil)
	var opts crypto.SignerOpts = crypto.SHA256
	if (&dkim.PrivateKey{Signer: s.Key}).Alg() == dkim.AlgEd25519 {
		opts = crypto.Hash(0) // Ed25519 signs the digest as its message (RFC 8463)
	}
	sig, err := s.Key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// fold cuts a base64 value into lines of 72, continued by a space.
func fold(b64 string) string {
	var parts []string
	for len(b64) > 72 {
		parts = append(parts, b64[:72])
		b64 = b64[72:]
	}
	parts = append(parts, b64)
	return strings.Join(parts, "\r\n ")
}
