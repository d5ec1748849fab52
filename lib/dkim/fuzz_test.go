package dkim

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseKeyRecord: a key record from DNS is the Internet's input; any
// text gives a key or an error, never a panic, and a key it gives is one
// of the two algorithms within the size limits.
func FuzzParseKeyRecord(f *testing.F) {
	f.Add("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("v=DKIM1; p=")
	f.Add("k=rsa; t=y:s; h=sha256; s=email; p=AAAA")
	f.Fuzz(func(t *testing.T, txt string) {
		k, err := ParseKeyRecord(txt)
		if err == nil && k.Alg != AlgRSA && k.Alg != AlgEd25519 {
			t.Fatalf("key of algorithm %q", k.Alg)
		}
	})
}

// FuzzSplit: a message's header splits into fields that, joined again,
// give back the header as it came.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("From: a@b.test\r\nSubject: x\r\n y\r\n\r\nbody\r\n"))
	f.Add([]byte(" continuation first\r\n\r\n"))
	f.Add([]byte("NoColon\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body, err := Split(msg)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, fl := range fields {
			b.WriteString(fl.Raw + "\r\n")
		}
		// the last field may end the message without its CRLF
		if !bytes.HasPrefix(msg, []byte(strings.TrimSuffix(b.String(), "\r\n"))) {
			t.Fatalf("fields %q are not the start of %q", b.String(), msg)
		}
		if body != nil && !bytes.HasSuffix(msg, body) {
			t.Fatalf("body %q is not the end of %q", body, msg)
		}
		for _, fl := range fields {
			ParseTags(fl.Value())
		}
	})
}
