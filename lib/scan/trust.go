package scan

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
)

// Trust is "checked only once": the instance that scanned a message adds
//
//	X-GW-Scanned: v=1; by=HOST; mac=HEX
//
// where mac is HMAC-SHA256, under the secret the instances share
// (control/scansecret), of the message's MIME-relevant header fields
// (MIME-Version and Content-*, raw, in order), the blank line and the
// body. Another gw-scan with the same secret (the inside listener, a
// secondary instance fed over QMTP) passes such a message without scanning
// it again. Received lines and other fields may be added on the way; the
// body and the fields that say how to read it may not change. Without the
// secret an outsider cannot make the header, and Rewrite strips any that
// arrives unverified.
type Trust struct {
	Secret []byte
	Host   string
}

const tokenField = "x-gw-scanned"

// maxToken bounds the X-GW-Scanned field read.
const maxToken = 512

func contentField(name string) bool {
	return name == "mime-version" || strings.HasPrefix(name, "content-")
}

// mac reads the message in r and returns its MAC and the value of its
// first X-GW-Scanned field.
func (t *Trust) mac(r io.Reader) (sum []byte, token string, err error) {
	h := hmac.New(sha256.New, t.Secret)
	br := bufio.NewReaderSize(r, 64<<10)
	var tok []byte
	seen := false
	err = walkHeader(br, func(name string, chunk []byte) error {
		switch {
		case name == "" || contentField(name):
			h.Write(chunk)
		case name == tokenField && !seen:
			if len(tok)+len(chunk) <= maxToken {
				tok = append(tok, chunk...)
			}
		}
		if name != tokenField && len(tok) > 0 {
			seen = true
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if _, err := io.Copy(h, br); err != nil {
		return nil, "", err
	}
	return h.Sum(nil), string(tok), nil
}

// Header returns the X-GW-Scanned line for the message in r, LF included.
func (t *Trust) Header(r io.Reader) (string, error) {
	sum, _, err := t.mac(r)
	if err != nil {
		return "", err
	}
	return "X-GW-Scanned: v=1; by=" + sanitize(t.Host) + "; mac=" + hex.EncodeToString(sum) + "\n", nil
}

// Verify reports whether the message in r carries a valid X-GW-Scanned.
func (t *Trust) Verify(r io.Reader) bool {
	sum, tok, err := t.mac(r)
	if err != nil || tok == "" {
		return false
	}
	_, v, _ := strings.Cut(tok, ":")
	for _, p := range strings.Split(v, ";") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(p), "mac="); ok {
			got, err := hex.DecodeString(strings.TrimSpace(m))
			return err == nil && hmac.Equal(got, sum)
		}
	}
	return false
}
