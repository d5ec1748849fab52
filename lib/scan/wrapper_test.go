package scan

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/qq"
)

func testWrapper(t *testing.T, policy ...string) (*Wrapper, *bytes.Buffer) {
	t.Helper()
	p, err := ParsePolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s := &Scanner{MIME: testRules(), Policy: p, Hostname: "gw.test", Log: logline.New(&log)}
	return &Wrapper{Scanner: s, TmpDir: t.TempDir(), Quarantine: &QuarantineDir{Dir: t.TempDir()}}, &log
}

func wire(from string, rcpts ...string) string {
	return string(envelope.Envelope{Sender: from, Recipients: rcpts}.Wire())
}

func TestWrap(t *testing.T) {
	exe := multipart("b", attachment("a.exe", "application/octet-stream", []byte("MZ")))
	cases := []struct {
		name     string
		policy   []string
		msg, env string
		code     int
		deliver  []string // recipients handed on; nil: no delivery
		held     int
	}{
		{"clean passes", nil, "Subject: s\n\nhi\n", wire("a@x", "u@example.com"), qq.OK, []string{"u@example.com"}, 0},
		{"banned rejected", nil, exe, wire("a@x", "u@example.com"), qq.Refused, nil, 0},
		{"one domain rejects all", []string{":banned:pass", "example.com:banned:reject"}, exe, wire("a@x", "u@example.org", "u@example.com"), qq.Refused, nil, 0},
		{"split quarantine and deliver", []string{":banned:quarantine", "example.org:banned:tag"}, exe, wire("a@x", "u@example.com", "v@example.org"), qq.OK, []string{"v@example.org"}, 1},
		{"discard", []string{":banned:discard"}, exe, wire("a@x", "u@example.com"), qq.OK, nil, 0},
		{"truncated envelope", nil, "Subject: s\n\nhi\n", "Fa@x\x00Tu@example.com\x00", qq.ReadError, nil, 0},
		{"bad envelope", nil, "Subject: s\n\nhi\n", "Xa@x\x00\x00", qq.BadEnvelope, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, log := testWrapper(t, c.policy...)
			code, d := w.Wrap(context.Background(), strings.NewReader(c.msg), strings.NewReader(c.env))
			if code != c.code || (d != nil) != (c.deliver != nil) {
				t.Fatalf("Wrap = %d, delivery %v; want %d, %v\n%s", code, d != nil, c.code, c.deliver, log)
			}
			if d != nil {
				defer d.Close()
				msgFile, envFile, err := d.Files()
				if err != nil {
					t.Fatal(err)
				}
				defer msgFile.Close()
				defer envFile.Close()
				var sent strings.Builder
				if err := d.WriteMessage(&sent); err != nil {
					t.Fatal(err)
				}
				env, err := envelope.Read(bufioReader(envFile))
				if err != nil || strings.Join(env.Recipients, ",") != strings.Join(c.deliver, ",") {
					t.Errorf("delivered to %v (%v), want %v", env.Recipients, err, c.deliver)
				}
				// The file gw-queue would read and the bytes written to
				// gw-queued's socket are one message.
				b, _ := io.ReadAll(msgFile)
				if !strings.HasPrefix(string(b), "X-Virus-Scanned: no (no clamd; MIME rules only) gw-scan at gw.test\n") || !strings.HasSuffix(string(b), c.msg) {
					t.Errorf("delivered message:\n%s", b)
				}
				if sent.String() != string(b) {
					t.Errorf("written to the socket:\n%s\nin the file:\n%s", sent.String(), b)
				}
			}
			held, _, _ := w.Quarantine.List()
			if len(held) != c.held {
				t.Errorf("%d held, want %d", len(held), c.held)
			}
			if c.code != qq.ReadError && c.code != qq.BadEnvelope && !strings.Contains(log.String(), "info verdict scan=") {
				t.Errorf("no verdict logged:\n%s", log)
			}
		})
	}
}

func bufioReader(r io.Reader) io.ByteReader { return &byteReader{r: r} }

type byteReader struct{ r io.Reader }

func (b *byteReader) ReadByte() (byte, error) {
	var p [1]byte
	_, err := io.ReadFull(b.r, p[:])
	return p[0], err
}

// TestWrapKeepsDSN: the recipients handed on keep their own DSN
// parameters, those quarantined drop out with theirs; a queue program
// that is not gw's own (Plain) gets qmail-queue's envelope alone.
func TestWrapKeepsDSN(t *testing.T) {
	exe := multipart("b", attachment("a.exe", "application/octet-stream", []byte("MZ")))
	in := "Fa@x\x00DRET=HDRS ENVID=e1\x00Tu@example.com\x00NNOTIFY=NEVER\x00Tv@example.org\x00NNOTIFY=SUCCESS ORCPT=rfc822;v@old.example\x00\x00"
	for _, plain := range []bool{false, true} {
		w, log := testWrapper(t, ":banned:quarantine", "example.org:banned:tag")
		w.Plain = plain
		code, d := w.Wrap(context.Background(), strings.NewReader(exe), strings.NewReader(in))
		if code != qq.OK || d == nil {
			t.Fatalf("Wrap = %d\n%s", code, log)
		}
		msgFile, envFile, err := d.Files()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(envFile)
		msgFile.Close()
		envFile.Close()
		d.Close()
		want := "Fa@x\x00DRET=HDRS ENVID=e1\x00Tv@example.org\x00NNOTIFY=SUCCESS ORCPT=rfc822;v@old.example\x00\x00"
		if plain {
			want = "Fa@x\x00Tv@example.org\x00\x00"
		}
		if string(b) != want {
			t.Errorf("plain %v: envelope handed on %q, want %q", plain, b, want)
		}
	}
}
