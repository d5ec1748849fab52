package tests

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/qmtp"
)

// evilPart is an attachment named name, as the attacker wants it shown.
func evilPart(name string) string {
	return "Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"" + name + "\"\n" +
		"Content-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte("MZ not really a program")) + "\n"
}

// damagedMIME are the shapes an attacker tries to slip a banned attachment
// past a MIME parser that gives up at the first error. Python's email
// package, like mail readers, still finds each attachment.
func damagedMIME() []struct{ name, msg string } {
	head := "From: a@sender.example\nTo: u@example.com\nSubject: invoice\nMIME-Version: 1.0\n"
	long := strings.Repeat("x", 5000)
	return []struct{ name, msg string }{
		{"a header line without a colon in the first part",
			head + "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\nthis line has no colon\n\nsee attached\n--b1\n" + evilPart("evil.exe") + "--b1--\n"},
		{"a boundary of 5000 characters",
			head + "Content-Type: multipart/mixed; boundary=\"" + long + "\"\n\n--" + long + "\nContent-Type: text/plain\n\nhi\n--" + long + "\n" + evilPart("evil.exe") + "--" + long + "--\n"},
		{"no close delimiter",
			head + "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nhi\n--b1\n" + evilPart("evil.exe")},
		{"an outer delimiter ends an inner multipart never closed",
			head + "Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\nContent-Type: multipart/alternative; boundary=\"i\"\n\n--i\nContent-Type: text/plain\n\nnever closed\n--o\n" + evilPart("after.bat") + "--o--\n"},
		{"a damaged header inside an attached message",
			head + "Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\nContent-Type: message/rfc822\n\nSubject: fwd\nContent-Type: multipart/mixed; boundary=\"i\"\n\n--i\nBroken header line\n--i\n" + evilPart("inner.scr") + "--i--\n--o--\n"},
		{"a digest part that declares no type holds a message",
			head + "Content-Type: multipart/digest; boundary=\"d\"\n\n--d\n\nSubject: digested\nContent-Type: multipart/mixed; boundary=\"m\"\n\n--m\n" + evilPart("digested.pif") + "--m--\n--d--\n"},
		{"the name in RFC 2231 sections",
			head + "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment;\n filename*0*=utf-8''%65v;\n filename*1=\"il.e\";\n filename*2=xe\n\nx\n--b1--\n"},
		{"the name an encoded word in quotes",
			head + "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: application/octet-stream; name=\"=?utf-8?B?ZXZpbC5leGU=?=\"\n\nx\n--b1--\n"},
		{"a disposition without a type, a quote left open",
			head + "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: application/octet-stream\nContent-Disposition: filename=\"open.exe\n\nx\n--b1--\n"},
		{"a uuencoded program in plain text",
			head + "Content-Type: text/plain\n\nsee the file\nbegin 644 uu.exe\nM35H``\n`\nend\n"},
	}
}

// TestScanDamagedMIMEWrapper: through gw-smtpd with gw-scan as its queue
// program, each damaged shape carrying a banned name is refused at DATA,
// and nothing is queued.
func TestScanDamagedMIMEWrapper(t *testing.T) {
	in, addr := scanInstance(t, nil)
	for _, c := range damagedMIME() {
		t.Run(c.name, func(t *testing.T) {
			if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, c.msg); !strings.HasPrefix(r, "554 5.3.0") {
				t.Errorf("reply %q, want 554 5.3.0 (banned)", r)
			}
		})
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
	log, _ := os.ReadFile(in.log)
	for _, w := range []string{`mime="ext=exe`, `mime="ext=bat`, `mime="ext=scr`, `mime="ext=pif`, `mime="uu-ext=exe`} {
		if !bytes.Contains(log, []byte(w)) {
			t.Errorf("log lacks %q", w)
		}
	}
}

// TestScanDamagedMIMEOverQMTP: QMTP carries any byte, so an attacker can
// end lines with a bare CR, as Python's email package and some readers
// take them; gw-scan behind gw-qmtpd refuses the attachment (QMTP D).
func TestScanDamagedMIMEOverQMTP(t *testing.T) {
	p := scanners(t)
	in := newSMTPDInstance(t, map[string]string{"clamd": p.clamdSock + "\n"})
	addr := in.qmtpdStandalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control})
	msg := "Subject: cr\rMIME-Version: 1.0\rContent-Type: multipart/mixed; boundary=\"b1\"\r\r--b1\rContent-Type: text/plain\r\rhi\r--b1\r" +
		strings.ReplaceAll(evilPart("cr.exe"), "\n", "\r") + "--b1--\r"
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(conn, qmtpPackage(msg, "a@sender.example", "u@example.com"))
	reply, _, err := qmtp.ReadString(bufio.NewReader(conn), qmtp.MaxResponse, qmtp.MaxResponse)
	if err != nil || !bytes.HasPrefix(reply, []byte("D")) {
		t.Errorf("QMTP reply %q (%v), want D (refused for good)", reply, err)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// TestScanDamagedMIMEProxy: the same shapes through gw-scan's SMTP proxy
// (lines up to its 4096-byte limit) are refused with 554 5.7.1 and never
// reach the inside host.
func TestScanDamagedMIMEProxy(t *testing.T) {
	p := scanners(t)
	inside := newSMTPDInstance(t, nil)
	insideAddr := inside.standalone(t, nil)
	addr, _, _ := scanProxy(t, insideAddr, map[string]string{"clamd": p.clamdSock + "\n"})
	for _, c := range damagedMIME() {
		if strings.Contains(c.name, "5000") {
			continue // longer than the proxy's line limit: refused before any scan
		}
		t.Run(c.name, func(t *testing.T) {
			if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, c.msg); !strings.HasPrefix(r, "554 5.7.1") {
				t.Errorf("reply %q, want 554 5.7.1", r)
			}
		})
	}
	if n := len(inside.messages(t)); n != 0 {
		t.Errorf("%d messages reached the inside host, want none", n)
	}
}

// TestScanBadMIMEQuarantined: a boundary that readers may cut in different
// places ("----=_Part_1" unquoted: '=' ends a token) is class badmime,
// held in the quarantine by default, released by hand; with
// ":badmime:pass" in scanpolicy it is delivered with the scan's headers.
func TestScanBadMIMEQuarantined(t *testing.T) {
	msg := "From: a@sender.example\nTo: u@example.com\nSubject: cut\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=----=_Part_1\n\n" +
		"------=_Part_1\n" + evilPart("cut.exe") + "------=_Part_1--\n"
	in, addr := scanInstance(t, nil)
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, msg); !strings.HasPrefix(r, "250") {
		t.Fatalf("reply %q, want 250 (held)", r)
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued, want none (held)", n)
	}
	list := gwScan(t, in, "quarantine", "list")
	if !strings.Contains(list, "badmime boundary: unquoted value cut at a special character") || !strings.Contains(list, "to=<u@example.com>") {
		t.Fatalf("quarantine list:\n%s", list)
	}
	log, _ := os.ReadFile(in.log)
	if !bytes.Contains(log, []byte("classes=badmime")) || !bytes.Contains(log, []byte("action=quarantine")) {
		t.Errorf("log:\n%s", log)
	}

	in2, addr2 := scanInstance(t, map[string]string{"scanpolicy": ":badmime:pass\n"})
	body := sendOnly(t, addr2, in2, msg)
	if !strings.Contains(body, "\nX-Virus-Scanned: gw-scan at gw.example.net\n") || !strings.HasSuffix(body, msg) {
		t.Errorf("passed by policy:\n%s", body)
	}
}

// TestScanUnscannedSaysSo: over clamdmaxbytes a message is not sent to
// clamd (a documented limit), and its X-Virus-Scanned says so instead of
// claiming a scan; over spamdmaxbytes its X-Spam-Status says unchecked. A
// message under both limits, the same clamd and spamd, is scanned and
// says so.
func TestScanUnscannedSaysSo(t *testing.T) {
	in, addr := scanInstance(t, map[string]string{"clamdmaxbytes": "4000\n", "spamdmaxbytes": "2000\n"})
	pad := func(n int) string { return strings.Repeat(strings.Repeat("z", 71)+"\n", n/72) }

	small := sendOnly(t, addr, in, plainMessage("small", "hello\n"))
	for _, h := range []string{"\nX-Virus-Scanned: gw-scan at gw.example.net\n", "\nX-Spam-Status: No, score="} {
		if !strings.Contains(small, h) {
			t.Errorf("small message lacks %q:\n%s", h, small)
		}
	}

	middle := plainMessage("middle", pad(3000))
	before := len(in.messages(t))
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, middle); !strings.HasPrefix(r, "250") {
		t.Fatalf("middle: %q", r)
	}
	ms := in.messages(t)
	body := in.body(t, ms[before])
	if !strings.Contains(body, "\nX-Virus-Scanned: gw-scan at gw.example.net\n") ||
		!regexp.MustCompile(`\nX-Spam-Status: unchecked \(\d+ bytes over spamdmaxbytes 2000\) gw-scan at gw.example.net\n`).MatchString(body) {
		t.Errorf("over spamd's limit only:\n%s", body[:strings.Index(body, "\n\n")])
	}

	// The marker clamd knows, past the limit: not scanned, and not
	// claimed to be.
	big := plainMessage("big", markerVirus+"\n"+pad(6000))
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, big); !strings.HasPrefix(r, "250") {
		t.Fatalf("big: %q", r)
	}
	ms = in.messages(t)
	body = in.body(t, ms[len(ms)-1])
	head := body[:strings.Index(body, "\n\n")]
	if strings.Contains(head, "X-Virus-Scanned: gw-scan at") ||
		!regexp.MustCompile(`\nX-Virus-Scanned: no \(\d+ bytes over clamdmaxbytes 4000; MIME rules only\) gw-scan at gw.example.net\n`).MatchString(head) ||
		!regexp.MustCompile(`\nX-Spam-Status: unchecked \(\d+ bytes over spamdmaxbytes 2000\)`).MatchString(head) {
		t.Errorf("over both limits:\n%s", head)
	}
	log, _ := os.ReadFile(in.log)
	if !bytes.Contains(log, []byte("clamd=skipped")) || !bytes.Contains(log, []byte("spamd=skipped")) {
		t.Errorf("log:\n%s", log)
	}
}
