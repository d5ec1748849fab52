package deliver

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// onTheWire is what a part's content would have been on the wire sent
// as it is: every line end CRLF. A quoted-printable part decodes to it.
func onTheWire(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func is7bit(t *testing.T, b []byte) {
	t.Helper()
	if has8bit(b) {
		t.Fatalf("output has 8-bit bytes:\n%s", b)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if len(strings.TrimSuffix(l, "\r")) > 998 {
			t.Fatalf("output line of %d bytes", len(l))
		}
	}
}

func TestDowngradeSevenBitUnchanged(t *testing.T) {
	msg := []byte("Subject: plain\n\nonly ASCII\r\nhere, = and all\n")
	out, err := Downgrade(msg)
	if err != nil || !bytes.Equal(out, msg) {
		t.Fatalf("7-bit message changed: %q, %v", out, err)
	}
}

// A single-part message: its Content-Transfer-Encoding is replaced in
// place, every other field goes out byte for byte.
func TestDowngradeSinglePart(t *testing.T) {
	msg := "Subject: caf\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"X-After: kept\n" +
		"\n" +
		"caf\xc3\xa9 = 1 \n" +
		"-- \n" +
		"trailing tab\t\n" +
		"no line end"
	want := "Subject: caf\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: quoted-printable\n" +
		"X-After: kept\n" +
		"\n" +
		"caf=C3=A9 =3D 1=20\n" +
		"=2D-=20\n" +
		"trailing tab=09\n" +
		"no line end"
	out, err := Downgrade([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
}

// A message with no MIME header at all is labelled: MIME-Version, a
// Content-Type that says the charset is not known, and the encoding.
func TestDowngradeNoMIME(t *testing.T) {
	out, err := Downgrade([]byte("Subject: x\r\n\r\nJ\xf6rg\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=F6rg\r\n"
	if string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// Long lines get soft breaks at 76 columns; lone CRs and NULs are
// encoded; a '-' never begins an encoded line. Decoding gives back the
// input with CRLF line ends.
func TestDowngradeQuotedPrintableLines(t *testing.T) {
	body := strings.Repeat("\xe9", 40) + strings.Repeat("a", 74) + "-" + strings.Repeat("-", 200) + "\n" +
		"lone\rCR and NUL\x00\n" + strings.Repeat(" ", 90) + "\n"
	out, err := Downgrade([]byte("Content-Type: text/plain\n\n" + body))
	if err != nil {
		t.Fatal(err)
	}
	is7bit(t, out)
	_, qp, _ := bytes.Cut(out, []byte("\n\n"))
	for _, l := range strings.Split(string(qp), "\n") {
		if len(l) > qpLineMax {
			t.Errorf("encoded line of %d bytes: %q", len(l), l)
		}
		if strings.HasPrefix(l, "-") {
			t.Errorf("encoded line begins with '-': %q", l)
		}
	}
	got, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(qp)))
	if err != nil {
		t.Fatal(err)
	}
	// Hard breaks decode as the encoding wrote them (LF here).
	if string(got) != body {
		t.Fatalf("decodes to\n%q\nwant\n%q", got, body)
	}
}

// A multipart message: the 8-bit part is encoded, the 7-bit one and the
// structure go out unchanged, a message/rfc822 part is walked into, and a
// multipart/digest's parts default to message/rfc822.
func TestDowngradeMultipart(t *testing.T) {
	inner := "Subject: inner\r\n\r\nSch\xc3\xb6n\r\n"
	msg := "MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"preamble\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\n" +
		"\r\n" +
		"Gr\xfc\xdfe\r\n" +
		"--b1 \r\n" +
		"Content-Type: text/plain\r\n" +
		"\r\n" +
		"ascii part\r\n" +
		"--b1\r\n" +
		"Content-Type: message/rfc822\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		inner +
		"--b1\r\n" +
		"Content-Type: multipart/digest; boundary=d\r\n" +
		"\r\n" +
		"--d\r\n" +
		"\r\n" +
		inner +
		"--d--\r\n" +
		"--b1--\r\n" +
		"epilogue\r\n"
	out, err := Downgrade([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	is7bit(t, out)
	for _, want := range []string{
		"Content-Transfer-Encoding: 7bit\r\n\r\npreamble\r\n--b1\r\n",
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b1 \r\n",
		"Content-Type: text/plain\r\n\r\nascii part\r\n--b1\r\n",
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
			"Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n" +
			"Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=C3=B6n\r\n--b1\r\n",
		"--d\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\n",
		"--d--\r\n--b1--\r\nepilogue\r\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Read back by the standard library's MIME reader.
	_, params, _ := mime.ParseMediaType("multipart/mixed; boundary=\"b1\"")
	_, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(p); string(got) != "Gr\xfc\xdfe" {
		t.Errorf("first part decodes to %q", got)
	}
}

func TestDowngradeRefused(t *testing.T) {
	cases := map[string]string{
		"8-bit header":        "Subject: caf\xc3\xa9\n\nbody \xc3\xa9\n",
		"8-bit folded header": "Subject: x\n caf\xc3\xa9\n\nbody\n",
		"8-bit part header":   "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Description: \xe9\n\n\xe9\n--b--\n",
		"already qp":          "Content-Transfer-Encoding: quoted-printable\n\n\xe9\n",
		"already base64":      "Content-Transfer-Encoding: base64\n\n\xe9\n",
		"unknown encoding":    "Content-Transfer-Encoding: x-uuencode\n\n\xe9\n",
		"no boundary":         "Content-Type: multipart/mixed\n\n\xe9\n",
		"boundary never":      "Content-Type: multipart/mixed; boundary=b\n\n\xe9\n",
		"8-bit preamble":      "Content-Type: multipart/mixed; boundary=b\n\n\xe9\n--b\n\nx\n--b--\n",
		"8-bit epilogue":      "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n\xe9\n",
		"message/partial":     "Content-Type: message/partial; id=1; number=1\n\n\xe9\n",
		"encoded multipart":   "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\n\xe9\n--b--\n",
		"too deep":            strings.Repeat("Content-Type: message/rfc822\n\n", maxMIMEDepth+2) + "\xe9\n",
	}
	for name, msg := range cases {
		out, err := Downgrade([]byte(msg))
		var de *DowngradeError
		if !errors.As(err, &de) {
			t.Errorf("%s: got %q, %v; want a DowngradeError", name, out, err)
		}
	}
	// 8-bit bytes only in the header, a 7-bit body: nothing to do for a
	// body, but the header cannot go either.
	if _, err := Downgrade([]byte("Subject: \xe9\n\nascii\n")); err == nil {
		t.Error("8-bit header with a 7-bit body accepted")
	}
}

// FuzzDowngrade: whatever the input, Downgrade does not panic, and what it
// returns is 7-bit (a 7-bit input unchanged). A multipart message built
// around two fuzzed part contents always converts, and the standard
// library's MIME reader decodes each part back to its content as it
// would have gone out on the wire.
func FuzzDowngrade(f *testing.F) {
	f.Add([]byte("Subject: x\n\ncaf\xc3\xa9\n"), []byte("plain\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n\xe9\n--b--\n"), []byte("\xe9\r\xe9 \n-x\n"))
	f.Add([]byte(strings.Repeat("=\xff", 60)), []byte("a\r\r\n.\n"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		out, err := Downgrade(a)
		var de *DowngradeError
		switch {
		case err != nil && !errors.As(err, &de):
			t.Fatalf("error of type %T: %v", err, err)
		case err == nil && has8bit(out):
			t.Fatalf("8-bit output %q for %q", out, a)
		case !has8bit(a) && (err != nil || !bytes.Equal(out, a)):
			t.Fatalf("7-bit input %q changed: %q, %v", a, out, err)
		}

		const boundary = "gw-fuzz-b"
		if bytes.Contains(a, []byte(boundary)) || bytes.Contains(b, []byte(boundary)) {
			return
		}
		msg := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=" + boundary + "\r\n\r\n" +
			"--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			string(a) + "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n" +
			string(b) + "\r\n--" + boundary + "--\r\n"
		out, err = Downgrade([]byte(msg))
		if err != nil {
			t.Fatalf("well-formed multipart refused: %v", err)
		}
		is7bit(t, out)
		_, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
		mr := multipart.NewReader(bytes.NewReader(body), boundary)
		for i, want := range [][]byte{a, b} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v\n%q", i, err, out)
			}
			got, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("part %d: %v\n%q", i, err, out)
			}
			if has8bit(want) {
				want = onTheWire(want)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("part %d decodes to %q, want %q\n%q", i, got, want, out)
			}
		}
	})
}
