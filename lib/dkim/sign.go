package dkim

import (
	"crypto"
	"errors"
	"net/mail"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// SignedFields are the fields gw signs, when present. From is listed
// twice: a second From added later would be picked by a verifier for the
// second entry and break the signature (oversigning, RFC 6376 §8.15).
// The fields that say who the message is from, to whom and what it is,
// once each; Received and trace fields are left out, relays add them.
var SignedFields = []string{
	"From", "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Signer signs mail with per-domain keys (LoadKeys).
type Signer struct {
	keys map[string][]*PrivateKey
}

// NewSigner returns a signer for keys, as LoadKeys gives them.
func NewSigner(keys map[string][]*PrivateKey) *Signer { return &Signer{keys: keys} }

// KeysFor returns the keys that sign mail whose From is in domain: the
// domain's own, or those of the closest parent domain that has keys
// (relaxed DMARC alignment accepts a parent's signature).
func (s *Signer) KeysFor(domain string) []*PrivateKey {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for d := domain; d != ""; {
		if k := s.keys[d]; len(k) > 0 {
			return k
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok || !strings.Contains(rest, ".") {
			break // never sign with a top-level domain's key
		}
		d = rest
	}
	return nil
}

// Sign returns the DKIM-Signature fields, each ending CRLF, that sign a
// CRLF message with every key of its From domain: an RSA and an Ed25519
// key for a domain give two signatures, so that verifiers that do not
// know Ed25519 still find one they can check (RFC 8463 §5). Nil when no
// key applies.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	fields, _, err := Split(msg)
	if err != nil {
		return nil, err
	}
	domain, err := FromDomain(fields)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, k := range s.KeysFor(domain) {
		sig, err := SignWith(msg, k.Domain, k.Selector, k.Signer)
		if err != nil {
			return nil, err
		}
		out = append(out, sig...)
	}
	return out, nil
}

// SignWith signs a CRLF message with one key, relaxed/relaxed, over
// SignedFields, and returns the DKIM-Signature field with its CRLF.
func SignWith(msg []byte, domain, selector string, key crypto.Signer) ([]byte, error) {
	signer, err := msgauth.NewSigner(&msgauth.SignOptions{
		Domain: domain, Selector: selector, Signer: key, Hash: crypto.SHA256,
		HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
		BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
		HeaderKeys:             SignedFields,
	})
	if err != nil {
		return nil, err
	}
	if _, err := signer.Write(msg); err != nil {
		signer.Close()
		return nil, err
	}
	if err := signer.Close(); err != nil {
		return nil, err
	}
	return []byte(signer.Signature()), nil
}

// ErrNoFrom says a message has no From field: no author to protect.
var ErrNoFrom = errors.New("message has no From field")

// FromDomain is the domain of the message's author (RFC 5322 From), the
// identity DMARC protects and signing follows. A message must have one
// From field; its addresses may be several, of one domain only (RFC 7489
// §6.6.1 leaves other cases to the receiver: gw refuses to guess).
func FromDomain(fields []Field) (string, error) {
	var from []Field
	for _, f := range fields {
		if strings.EqualFold(f.Name, "From") {
			from = append(from, f)
		}
	}
	if len(from) == 0 {
		return "", ErrNoFrom
	}
	if len(from) > 1 {
		return "", errors.New("message has more than one From field")
	}
	addrs := fromAddresses(from[0].Value())
	if len(addrs) == 0 {
		return "", errors.New("From field has no address with a domain")
	}
	domain := ""
	for _, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if at < 1 || at == len(a)-1 {
			return "", errors.New("From address without a domain: " + a)
		}
		d := strings.ToLower(strings.TrimSuffix(a[at+1:], "."))
		if domain != "" && d != domain {
			return "", errors.New("From field names more than one domain")
		}
		domain = d
	}
	return domain, nil
}

// fromAddresses reads the addresses of a From value; when the strict
// parser refuses it (an unknown charset in a display name, say), the
// addresses between angle brackets, or the value itself.
func fromAddresses(v string) []string {
	v = strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", ""), "\n", "")
	if list, err := mail.ParseAddressList(v); err == nil {
		var out []string
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for rest := v; ; {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		out = append(out, strings.TrimSpace(rest[i+1:i+j]))
		rest = rest[i+j+1:]
	}
	if len(out) == 0 {
		if s := strings.TrimSpace(v); strings.Count(s, "@") == 1 && !strings.ContainsAny(s, " ,;\"") {
			out = append(out, s)
		}
	}
	return out
}
