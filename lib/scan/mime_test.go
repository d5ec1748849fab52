package scan

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func testRules() *MIMERules {
	m := &MIMERules{BannedExt: map[string]bool{}, BannedTypes: DefaultBannedTypes, MaxDepth: 20, MaxParts: 100, MaxArchive: 1 << 20, EICAR: true}
	for _, e := range DefaultBannedExt {
		m.BannedExt[e] = true
	}
	return m
}

func multipart(boundary string, parts ...string) string {
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\n\npreamble\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\n" + p + "\n")
	}
	b.WriteString("--" + boundary + "--\n")
	return b.String()
}

func attachment(name, ctype string, data []byte) string {
	return "Content-Type: " + ctype + "; name=\"" + name + "\"\nContent-Disposition: attachment; filename=\"" + name + "\"\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString(data)
}

func zipped(names ...string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, _ := zw.Create(n)
		w.Write([]byte("x"))
	}
	zw.Close()
	return buf.Bytes()
}

// nested returns a message nested depth multiparts deep.
func nested(depth int) string {
	var head, tail strings.Builder
	head.WriteString("MIME-Version: 1.0\n")
	bs := make([]string, depth)
	for i := range bs {
		bs[i] = "b" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
	}
	for i := depth - 1; i >= 0; i-- {
		head.WriteString("Content-Type: multipart/mixed; boundary=\"" + bs[i] + "\"\n\n--" + bs[i] + "\n")
	}
	for i := 0; i < depth; i++ {
		tail.WriteString("\n--" + bs[i] + "--\n")
	}
	return head.String() + "Content-Type: text/plain\n\nleaf" + tail.String()
}

func TestInspect(t *testing.T) {
	eicarFile := `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`
	cases := []struct {
		name, msg, class, rule string
	}{
		{"plain", "Subject: hi\n\nhello\n", "", ""},
		{"text attachment", multipart("b", "Content-Type: text/plain\n\nhi", attachment("notes.txt", "text/plain", []byte("hi"))), "", ""},
		{"exe", multipart("b", attachment("setup.exe", "application/octet-stream", []byte("MZ"))), ClassBanned, "ext=exe"},
		{"double extension upper case", multipart("b", attachment("INVOICE.PDF.SCR", "application/pdf", []byte("x"))), ClassBanned, "ext=scr"},
		{"trailing dot", multipart("b", attachment("run.bat.", "application/octet-stream", []byte("x"))), ClassBanned, "ext=bat"},
		{"rfc2047 name", multipart("b", "Content-Type: application/octet-stream; name=\"=?utf-8?B?"+base64.StdEncoding.EncodeToString([]byte("rechnung.exe"))+"?=\"\n\nx"), ClassBanned, "ext=exe"},
		{"rfc2231 name", multipart("b", "Content-Type: application/octet-stream\nContent-Disposition: attachment; filename*=utf-8''a%2Ejs\n\nx"), ClassBanned, "ext=js"},
		{"banned type", multipart("b", attachment("a.bin", "application/x-msdownload", []byte("MZ"))), ClassBanned, "type=application/x-msdownload"},
		{"zip with exe", multipart("b", attachment("a.zip", "application/zip", zipped("readme.txt", "sub/setup.exe"))), ClassBanned, "zip-ext=exe"},
		{"zip clean", multipart("b", attachment("a.zip", "application/zip", zipped("readme.txt"))), "", ""},
		{"broken zip", multipart("b", attachment("a.zip", "application/zip", []byte("PK not really"))), "", ""},
		{"eicar", multipart("b", attachment("e.com.txt", "text/plain", []byte(eicarFile))), ClassVirus, "eicar"},
		{"eicar top level", "Subject: x\n\n" + eicarFile + "\n", ClassVirus, "eicar"},
		{"attached message with exe", multipart("b", "Content-Type: message/rfc822\n\n"+multipart("c", attachment("x.vbs", "text/plain", []byte("x")))), ClassBanned, "ext=vbs"},
		{"deep nesting", nested(30), ClassBomb, "depth>20"},
		{"within depth", nested(15), "", ""},
		{"many parts", multipart("b", strings.Split(strings.Repeat("Content-Type: text/plain\n\nx\x00", 150), "\x00")[:150]...), ClassBomb, "parts>100"},
		{"unterminated multipart", "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nx\n", "", ""},
		{"missing boundary", "Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n", ClassBadMIME, ""},
		{"bad header", "Subject x\n\nbody", "", ""},
		{"unknown encoding", "Content-Transfer-Encoding: x-uue\n\nbody", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := testRules().Inspect(strings.NewReader(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			class, rule := "", ""
			if f != nil {
				class, rule = f.Class, f.Rule
			}
			if class != c.class || (c.rule != "" && rule != c.rule) {
				t.Errorf("Inspect = %q %q, want %q %q", class, rule, c.class, c.rule)
			}
		})
	}
}

// TestInspectHostileBounded: hostile structures finish quickly whatever
// the limits say, because the walk stops at the first limit it passes.
func TestInspectHostileBounded(t *testing.T) {
	hostile := map[string]string{
		"10000 deep":    nested(10000),
		"100000 parts":  multipart("b", strings.Split(strings.Repeat("\x00", 100000), "\x00")...),
		"long boundary": multipart(strings.Repeat("b", 70), "x"),
		"long header":   "Subject: " + strings.Repeat("a", 1<<20) + "\n\nx",
	}
	for name, msg := range hostile {
		start := time.Now()
		testRules().Inspect(strings.NewReader(msg))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %v", name, d)
		}
	}
}

// FuzzInspect: any input gives a finding or nil, never a panic or a hang.
func FuzzInspect(f *testing.F) {
	f.Add([]byte("Subject: hi\n\nhello\n"))
	f.Add([]byte(multipart("b", attachment("a.exe", "application/octet-stream", []byte("MZ")))))
	f.Add([]byte(multipart("b", attachment("a.zip", "application/zip", zipped("x.scr")))))
	f.Add([]byte(nested(25)))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"\"\n\n----\n\n------\n"))
	f.Add([]byte("Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			testRules().Inspect(bytes.NewReader(data))
			var out bytes.Buffer
			if err := Rewrite(&out, bytes.NewReader(data), nil); err != nil {
				t.Error(err)
			}
			if out.Len() > len(data) {
				t.Errorf("Rewrite grew the message: %d > %d", out.Len(), len(data))
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("no result after 5s for %d bytes", len(data))
		}
	})
}
