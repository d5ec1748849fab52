// Package dane authenticates an SMTP server by the TLSA records of its
// name (RFC 7672, on RFC 6698 and 7671): records looked up through a
// DNSSEC-validating resolver gw trusts, and a certificate chain checked
// against the records that SMTP may use.
//
// SMTP uses only two kinds of record (RFC 7672 3.1): DANE-EE (usage 3),
// which pins the server's own certificate or key, whatever its names
// and dates; and DANE-TA (usage 2), which names a trust anchor the
// server's chain must lead to, with the names checked (3.2.3). PKIX-TA
// and PKIX-EE (0 and 1) are unusable for SMTP, as are unknown selectors
// and matching types.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Usages, selectors and matching types of TLSA records (RFC 6698 2.1,
// RFC 7218's names).
const (
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Record is one TLSA record.
type Record struct {
	Usage, Selector, Matching uint8
	Data                      []byte
}

func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.Matching, hex.EncodeToString(r.Data))
}

// Usable reports whether SMTP may use r (RFC 7672 3.1): DANE-TA or
// DANE-EE, a known selector, and a matching type whose data has its
// digest's length.
func (r Record) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.Matching {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Usable is the usable records among rs.
func Usable(rs []Record) []Record {
	var out []Record
	for _, r := range rs {
		if r.Usable() {
			out = append(out, r)
		}
	}
	return out
}

// matches reports whether certificate c is what r names.
func (r Record) matches(c *x509.Certificate) bool {
	data := c.Raw
	if r.Selector == SelectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch r.Matching {
	case MatchSHA256:
		sum := sha256.Sum256(data)
		data = sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		data = sum[:]
	}
	return bytes.Equal(data, r.Data)
}

// ErrNoMatch is a chain that no usable record authenticates.
var ErrNoMatch = errors.New("no TLSA record matches the server's certificate chain")

// Verify authenticates the chain a server presented (leaf first) by the
// usable records of rs, for a server that must carry one of names
// (checked for DANE-TA only). It returns the record that matched.
func Verify(rs []Record, chain []*x509.Certificate, names []string, now time.Time) (Record, error) {
	if len(chain) == 0 {
		return Record{}, errors.New("the server presented no certificate")
	}
	var taErr error
	for _, r := range Usable(rs) {
		switch r.Usage {
		case UsageDANEEE:
			// 3.1.1: the key or certificate alone, names and dates
			// ignored: the DNS says whose it is.
			if r.matches(chain[0]) {
				return r, nil
			}
		case UsageDANETA:
			if err := verifyTA(r, chain, names, now); err == nil {
				return r, nil
			} else if !errors.Is(err, ErrNoMatch) {
				taErr = err
			}
		}
	}
	if taErr != nil {
		return Record{}, taErr
	}
	return Record{}, ErrNoMatch
}

// verifyTA checks the chain against a DANE-TA record: some certificate
// the server sent (RFC 7672 3.2.2: servers must send the trust anchor,
// as a bare key cannot be checked otherwise) matches r, the leaf chains
// to it, and the leaf carries one of names.
func verifyTA(r Record, chain []*x509.Certificate, names []string, now time.Time) error {
	for i, ta := range chain {
		if !r.matches(ta) {
			continue
		}
		if i == 0 {
			// the leaf itself as its own anchor: only its names count
			return checkNames(chain[0], names)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ta)
		inter := x509.NewCertPool()
		for _, c := range chain[1:i] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("DANE-TA record %s matches, but the chain does not verify to it: %w", r, err)
		}
		return checkNames(chain[0], names)
	}
	return ErrNoMatch
}

func checkNames(c *x509.Certificate, names []string) error {
	for _, n := range c.DNSNames {
		if MatchName(n, names) {
			return nil
		}
	}
	return fmt.Errorf("the certificate's names %q match none of %q", c.DNSNames, names)
}

// MatchName reports whether a certificate name (a DNS SAN, "*.x" allowed
// as the whole leftmost label) satisfies one of names: an exact name, or
// ".suffix" for any name below suffix.
func MatchName(certName string, names []string) bool {
	c := strings.ToLower(strings.TrimSuffix(certName, "."))
	wild := strings.HasPrefix(c, "*.")
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if strings.HasPrefix(n, ".") {
			if strings.HasSuffix(c, n) && (!wild || len(c) > len(n)+1 || c[1:] == n) {
				return true
			}
			continue
		}
		if c == n {
			return true
		}
		if _, parent, ok := strings.Cut(n, "."); ok && wild && parent == c[2:] {
			return true
		}
	}
	return false
}
