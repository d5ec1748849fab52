package tests

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scanInstance is a gw-smtpd instance whose QMAILQUEUE is gw-scan, with
// the test binary's clamd and spamd in its control files.
func scanInstance(t *testing.T, files map[string]string) (*smtpdInstance, string) {
	t.Helper()
	p := scanners(t)
	base := map[string]string{"clamd": p.clamdSock + "\n", "spamd": p.spamdAddr + "\n"}
	for k, v := range files {
		base[k] = v
	}
	in := newSMTPDInstance(t, base)
	addr := in.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control})
	return in, addr
}

// sendMessage sends msg (LF line ends) from a dialogue and returns the
// reply to the final dot.
func sendMessage(t *testing.T, addr, from string, rcpts []string, msg string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("EHLO client.example\r\nMAIL FROM:<" + from + ">\r\n")
	for _, r := range rcpts {
		b.WriteString("RCPT TO:<" + r + ">\r\n")
	}
	b.WriteString("DATA\r\n")
	for _, l := range strings.SplitAfter(msg, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, ".") {
			l = "." + l
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + "\r\n")
	}
	b.WriteString(".\r\nQUIT\r\n")
	replies := smtpdDialogue(t, addr, b.String())
	if len(replies) < 2 {
		t.Fatalf("dialogue ended early: %q", replies)
	}
	return replies[len(replies)-2]
}

// sendOnly sends msg to u@example.com through addr, expects 250 and
// returns the message, the only one, that in's queue then holds.
func sendOnly(t *testing.T, addr string, in *smtpdInstance, msg string) string {
	t.Helper()
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, msg); !strings.HasPrefix(r, "250") {
		t.Fatalf("mail to u@example.com: %q", r)
	}
	ms := in.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ms))
	}
	return in.body(t, ms[0])
}

func plainMessage(subject, body string) string {
	return "From: a@sender.example\nTo: u@example.com\nSubject: " + subject + "\nMessage-ID: <" + subject + "@sender.example>\nDate: Sun, 22 Nov 2026 05:00:00 +0000\n\n" + body
}

func attachmentMessage(name, ctype string, data []byte) string {
	return "From: a@sender.example\nTo: u@example.com\nSubject: attached\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nsee attached\n" +
		"--b1\nContent-Type: " + ctype + "; name=\"" + name + "\"\nContent-Disposition: attachment; filename=\"" + name + "\"\n" +
		"Content-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString(data) + "\n--b1--\n"
}

func zipOf(t *testing.T, name string, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	zw.Close()
	return buf.Bytes()
}

func TestScanWrapperVerdicts(t *testing.T) {
	in, addr := scanInstance(t, map[string]string{
		"spamkill":   "500\n",
		"scanpolicy": ":spamkill:tag\nexample.com:spamkill:reject\nhold.example.org:virus:quarantine\n",
	})
	cases := []struct {
		name  string
		rcpt  string
		msg   string
		reply string // prefix of the reply to the final dot
	}{
		{"virus refused at DATA", "u@example.com", plainMessage("virus", "here it is: "+markerVirus+"\n"), "554 5.3.0"},
		{"eicar without clamd", "u@example.com", attachmentMessage("e.txt", "text/plain", []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)), "554 5.3.0"},
		{"gtube over spamkill refused", "u@example.com", plainMessage("spam", gtube+"\n"), "554 5.3.0"},
		{"banned extension", "u@example.com", attachmentMessage("invoice.pdf.exe", "application/octet-stream", []byte("MZ fake")), "554 5.3.0"},
		{"banned inside zip", "u@example.com", attachmentMessage("docs.zip", "application/zip", zipOf(t, "dir/run.scr", []byte("x"))), "554 5.3.0"},
		{"banned type", "u@example.com", attachmentMessage("a.bin", "application/x-msdownload", []byte("MZ")), "554 5.3.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := sendMessage(t, addr, "a@sender.example", []string{c.rcpt}, c.msg); !strings.HasPrefix(r, c.reply) {
				t.Errorf("reply %q, want %s", r, c.reply)
			}
		})
	}
	if n := len(in.messages(t)); n != 0 {
		t.Fatalf("%d messages queued after refusals, want none", n)
	}

	t.Run("clean mail byte-identical, forged headers stripped", func(t *testing.T) {
		orig := "X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\nFrom: a@sender.example\nTo: u@example.com\nSubject: hello\nX-Virus-Scanned: by nobody\n  continued\nDate: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <clean@sender.example>\n\nBody line\n.leading dot\n\ttab line   \n"
		want := "From: a@sender.example\nTo: u@example.com\nSubject: hello\nDate: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <clean@sender.example>\n\nBody line\n.leading dot\n\ttab line   \n"
		body := sendOnly(t, addr, in, orig)
		if !strings.HasSuffix(body, want) {
			t.Fatalf("queued message does not end with the original minus forged headers:\n%s", body)
		}
		head := strings.TrimSuffix(body, want)
		for _, h := range []string{"\nX-Virus-Scanned: gw-scan at gw.example.net\n", "\nX-Spam-Status: No, score=", "\nReceived: from "} {
			if !strings.Contains(head, h) {
				t.Errorf("added header %q missing:\n%s", h, head)
			}
		}
		for _, h := range []string{"X-Spam-Flag", "by nobody", "score=-100"} {
			if strings.Contains(body, h) {
				t.Errorf("forged %q kept:\n%s", h, body)
			}
		}
	})

	t.Run("gtube under spamkill for another domain tagged", func(t *testing.T) {
		before := len(in.messages(t))
		if r := sendMessage(t, addr, "a@sender.example", []string{"u@sub.example.org"}, plainMessage("spam2", gtube+"\n")); !strings.HasPrefix(r, "250") {
			t.Fatalf("gtube to sub.example.org: %q", r)
		}
		ms := in.messages(t)
		if len(ms) != before+1 {
			t.Fatalf("%d messages queued, want %d", len(ms), before+1)
		}
		body := in.body(t, ms[len(ms)-1])
		if !strings.Contains(body, "\nX-Spam-Flag: YES\n") || !strings.Contains(body, "X-Spam-Status: Yes, score=") || !strings.Contains(body, "GTUBE") {
			t.Errorf("GTUBE not tagged:\n%s", body)
		}
	})

	t.Run("virus quarantined per domain, listed and released", func(t *testing.T) {
		before := len(in.messages(t))
		if r := sendMessage(t, addr, "a@sender.example", []string{"u@hold.example.org"}, plainMessage("held", markerVirus+"\n")); !strings.HasPrefix(r, "250") {
			t.Fatalf("virus to hold.example.org: %q", r)
		}
		if n := len(in.messages(t)); n != before {
			t.Fatalf("quarantined message was queued (%d, want %d)", n, before)
		}
		list := gwScan(t, in, "quarantine", "list")
		if !strings.Contains(list, "to=<u@hold.example.org>") || !strings.Contains(list, markerSig) {
			t.Fatalf("quarantine list:\n%s", list)
		}
		id := strings.Fields(list)[0]
		shown := gwScan(t, in, "quarantine", "show", id)
		if !strings.Contains(shown, markerVirus) || !strings.Contains(shown, "X-GW-Alert: virus "+markerSig) {
			t.Errorf("quarantine show:\n%s", shown)
		}
		gwScan(t, in, "quarantine", "release", id)
		ms := in.messages(t)
		if len(ms) != before+1 || ms[len(ms)-1].Recipients[0].Address != "u@hold.example.org" {
			t.Fatalf("release queued %d messages, want %d", len(ms), before+1)
		}
		if list := gwScan(t, in, "quarantine", "list"); list != "" {
			t.Errorf("quarantine not empty after release:\n%s", list)
		}
	})

	log, _ := os.ReadFile(in.log)
	for _, want := range []string{"info verdict scan=", "action=reject", "clamd=" + markerSig, "spamd=spam", `mime="ext=exe`, `mime="zip-ext=scr`, "action=quarantine", "clamd_ms="} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// gwScan runs gw-scan with the instance's control directory and queue.
func gwScan(t *testing.T, in *smtpdInstance, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin("gw-scan"), append([]string{"--control-dir", in.control}, args...)...)
	cmd.Env = in.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gw-scan %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestScanWrapperScannerDown(t *testing.T) {
	p := scanners(t)
	dead := filepath.Join(workDir(t), "no-clamd.sock")
	for _, c := range []struct {
		name, policy, reply string
		queued              int
	}{
		{"tempfail by default", "", "451 4.3.0", 0},
		{"pass with a header by choice", ":fail:tag\n", "250", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := newSMTPDInstance(t, map[string]string{"clamd": dead + "\n", "spamd": p.spamdAddr + "\n", "scanpolicy": c.policy, "scantimeout": "5\n"})
			addr := in.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control})
			if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("down", "hello\n")); !strings.HasPrefix(r, c.reply) {
				t.Fatalf("clamd down: %q, want %s", r, c.reply)
			}
			ms := in.messages(t)
			if len(ms) != c.queued {
				t.Fatalf("%d queued, want %d", len(ms), c.queued)
			}
			if c.queued > 0 {
				if body := in.body(t, ms[0]); !strings.Contains(body, "X-GW-Alert: unscanned") {
					t.Errorf("passed unscanned without a header:\n%s", body)
				}
			}
			log, _ := os.ReadFile(in.log)
			if !bytes.Contains(log, []byte("warning verdict")) || !bytes.Contains(log, []byte("clamd=error")) {
				t.Errorf("log:\n%s", log)
			}
		})
	}
}

// TestScanWrapperToQueued: with GW_QUEUED set, gw-scan hands scanned mail
// to gw-queued's socket, as gw-smtpd itself would, instead of a gw-queue
// process.
func TestScanWrapperToQueued(t *testing.T) {
	p := scanners(t)
	in := newSMTPDInstance(t, map[string]string{"clamd": p.clamdSock + "\n"})
	sock := filepath.Join(in.dir, "inject.sock")
	qd := exec.Command(bin("gw-queued"), "--queue", in.queue, "--socket", sock)
	if err := qd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qd.Process.Kill(); qd.Wait() }()
	if err := pollUntil(func() error { _, err := os.Stat(sock); return err }, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	addr := in.standalone(t, []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control, "GW_QUEUED=" + sock})
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("sock", "hi\n")); !strings.HasPrefix(r, "250") {
		t.Fatalf("clean mail via gw-queued: %q", r)
	}
	if r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("sockv", markerVirus+"\n")); !strings.HasPrefix(r, "554") {
		t.Fatalf("virus via gw-queued: %q", r)
	}
	ms := in.messages(t)
	if len(ms) != 1 {
		t.Fatalf("%d queued, want 1", len(ms))
	}
	body := in.body(t, ms[0])
	if !strings.Contains(body, "X-Virus-Scanned: gw-scan at gw.example.net\n") || strings.Contains(body, "(gw-queue ") {
		t.Errorf("not scanned, or queued by a gw-queue process:\n%s", body)
	}
}
