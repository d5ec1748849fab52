package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gw/lib/dns"
)

// Key sizes. Verifiers must accept RSA keys of 1024 to 4096 bits (RFC
// 8301 §3.2); a larger one only makes the gateway spend CPU an attacker
// chose, so it is refused. gw signs with 2048 bits.
const (
	MinRSABits    = 1024
	MaxRSABits    = 4096
	SignRSABits   = 2048
	maxKeyFileLen = 16 << 10
)

// Algorithms a key may have, as the k= tag names them.
const (
	AlgRSA     = "rsa"
	AlgEd25519 = "ed25519"
)

// PublicKey is a key record (RFC 6376 §3.6.1) as gw uses it.
type PublicKey struct {
	Alg    string           // AlgRSA or AlgEd25519
	Key    crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey
	Hashes []string         // h=, nil when any
	Flags  []string         // t=: y (testing), s (no subdomains)
}

// ParseKeyRecord reads a key record's text (the TXT strings joined).
// A revoked key (empty p=), a key of another service, an RSA key outside
// MinRSABits..MaxRSABits and an unknown algorithm are errors.
func ParseKeyRecord(txt string) (*PublicKey, error) {
	tags, err := ParseTags(txt)
	if err != nil {
		return nil, fmt.Errorf("key record: %v", err)
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("key record: version %q", v)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("key record: no p= tag")
	}
	p = StripWSP(p)
	if p == "" {
		return nil, errors.New("key revoked (empty p=)")
	}
	if s, ok := tags["s"]; ok && !listHas(s, "email") && !listHas(s, "*") {
		return nil, errors.New("key record: not for email (s=)")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key record: p= is not base64: %v", err)
	}
	k := &PublicKey{Alg: tags["k"]}
	if k.Alg == "" {
		k.Alg = AlgRSA
	}
	if h, ok := tags["h"]; ok {
		k.Hashes = splitList(h)
	}
	if t, ok := tags["t"]; ok {
		k.Flags = splitList(t)
	}
	switch k.Alg {
	case AlgRSA:
		pub, err := parseRSA(der)
		if err != nil {
			return nil, err
		}
		k.Key = pub
	case AlgEd25519:
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key record: Ed25519 key of %d bytes", len(der))
		}
		k.Key = ed25519.PublicKey(der)
	default:
		return nil, fmt.Errorf("key record: unknown algorithm k=%s", k.Alg)
	}
	return k, nil
}

func parseRSA(der []byte) (*rsa.PublicKey, error) {
	// RFC 6376 says SubjectPublicKeyInfo; some publish the bare
	// RSAPublicKey (erratum 3017): take both.
	var pub *rsa.PublicKey
	if any, err := x509.ParsePKIXPublicKey(der); err == nil {
		p, ok := any.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("key record: k=rsa but the key is not RSA")
		}
		pub = p
	} else if p, err2 := x509.ParsePKCS1PublicKey(der); err2 == nil {
		pub = p
	} else {
		return nil, fmt.Errorf("key record: bad RSA key: %v", err)
	}
	if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("key record: RSA key of %d bits, outside %d..%d", bits, MinRSABits, MaxRSABits)
	}
	return pub, nil
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ":") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func listHas(s, want string) bool {
	for _, e := range splitList(s) {
		if e == want {
			return true
		}
	}
	return false
}

// KeyName is the DNS name of a key record.
func KeyName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// ErrKeyTemporary marks a key lookup that may succeed later.
var ErrKeyTemporary = errors.New("key lookup failed temporarily")

// LookupKey fetches and parses the key record of selector and domain.
// A temporary DNS failure wraps ErrKeyTemporary; more than one record is
// an error (RFC 6376 §3.6.2.2 leaves it undefined).
func LookupKey(ctx context.Context, r *dns.Resolver, selector, domain string) (*PublicKey, error) {
	txts, err := r.LookupTXT(ctx, KeyName(selector, domain))
	if dns.Temporary(err) {
		return nil, fmt.Errorf("%w: %v", ErrKeyTemporary, err)
	}
	if err != nil || len(txts) == 0 {
		return nil, fmt.Errorf("no key record at %s", KeyName(selector, domain))
	}
	if len(txts) > 1 {
		return nil, fmt.Errorf("%d key records at %s", len(txts), KeyName(selector, domain))
	}
	return ParseKeyRecord(txts[0])
}

// PrivateKey is a signing key with the names it signs under.
type PrivateKey struct {
	Domain   string
	Selector string
	Signer   crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// Alg is the key's k= name.
func (k *PrivateKey) Alg() string {
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		return AlgEd25519
	}
	return AlgRSA
}

// GenerateKey makes a new key: RSA of SignRSABits, or Ed25519.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgRSA:
		return rsa.GenerateKey(rand.Reader, SignRSABits)
	case AlgEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unknown key algorithm %q: want rsa or ed25519", alg)
}

// MarshalKey is a private key as the key file holds it: PKCS#8 PEM.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a key file's bytes: PKCS#8 PEM (what gw-dkim keygen
// writes) or PKCS#1 "RSA PRIVATE KEY" PEM (what opendkim-genkey and
// openssl genrsa write). An RSA key below SignRSABits is refused: it would
// sign mail receivers increasingly distrust.
func ParseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not a PEM key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < SignRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: gw signs with %d to %d", bits, SignRSABits, MaxRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("key of type %T: want RSA or Ed25519", key)
}

// PublicRecord is the TXT record that publishes k's public half.
func PublicRecord(k crypto.Signer) (string, error) {
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("key of type %T", k.Public())
}

// KeyFile is where a domain's key for a selector lives under control/.
func KeyFile(control, domain, selector string) string {
	return filepath.Join(control, "dkim", strings.ToLower(domain), selector+".key")
}

// LoadKeys reads every key under control/dkim/: one directory a domain,
// one SELECTOR.key file a selector. A missing control/dkim is no keys; a
// file that is not a usable key is an error naming it, so that a broken
// key stops the listener at start, not a message at signing time.
func LoadKeys(control string) (map[string][]*PrivateKey, error) {
	root := filepath.Join(control, "dkim")
	domains, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys := make(map[string][]*PrivateKey)
	for _, d := range domains {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			sel, ok := strings.CutSuffix(f.Name(), ".key")
			if !ok || sel == "" || f.IsDir() {
				continue
			}
			path := filepath.Join(root, d.Name(), f.Name())
			k, err := readKeyFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			domain := strings.ToLower(d.Name())
			keys[domain] = append(keys[domain], &PrivateKey{Domain: domain, Selector: sel, Signer: k})
		}
	}
	return keys, nil
}

func readKeyFile(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFileLen {
		return nil, errors.New("key file too large")
	}
	return ParseKey(b)
}
