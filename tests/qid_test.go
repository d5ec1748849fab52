package tests

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gw/lib/qmtp"
)

// The queue id in the reply: one key from the client's transcript to the
// queue's log and listing (qmail's "qp").

var okQID = regexp.MustCompile(`^250 2\.0\.0 ok ([0-9a-f]{13})$`)

// TestQIDInSMTPReplyThroughQueued: a message through gw-smtpd and
// gw-queued's socket is answered "250 2.0.0 ok <qid>"; gw-qstat lists it
// under that id, gw-queued logs "queued qid=<qid>" and gw-smtpd logs
// "accepted sid=… qid=<qid>".
func TestQIDInSMTPReplyThroughQueued(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	sock := filepath.Join(in.dir, "inject.sock")
	qd := startQueued(t, in.queue, sock)
	addr := in.standalone(t, []string{"GW_QUEUED=" + sock})

	out := swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@example.com", "--header", "Subject: qid")
	m := okQID.FindStringSubmatch(replyTo(out, "."))
	if m == nil {
		t.Fatalf("end of data answered %q, want 250 2.0.0 ok and 13 hex digits\n%s", replyTo(out, "."), out)
	}
	qid := m[1]

	list, _ := qstatRun(t, nil, 0, "--queue", in.queue, "list")
	if !strings.Contains(list, qid) {
		t.Errorf("gw-qstat list does not name %s:\n%s", qid, list)
	}
	waitFor(t, "gw-queued's queued line", 5*time.Second, func() bool {
		return strings.Contains(qd.stderr.String(), "info queued qid="+qid+" ")
	})
	log, _ := os.ReadFile(in.log)
	acc := regexp.MustCompile(`(?m)^info accepted sid=(\S+) msg=\S+ qid=` + qid + ` from=alice@sender\.example `).FindSubmatch(log)
	if acc == nil {
		t.Fatalf("gw-smtpd's log has no accepted line with sid= and qid=%s:\n%s", qid, log)
	}
	// gw-queued's line names the session too: the one link both ways.
	if want := "info queued qid=" + qid + " sid=" + string(acc[1]) + " "; !strings.Contains(qd.stderr.String(), want) {
		t.Errorf("gw-queued's log has no %q:\n%s", want, qd.stderr.String())
	}
}

// TestQIDInSMTPReplyThroughGwQueue: with gw-queue as the injector (a
// process a message, qmail-queue's interface) the id comes back on the
// descriptor GW_QIDFD names: same reply, same listing.
func TestQIDInSMTPReplyThroughGwQueue(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	addr := in.underTcpserver(t, "")
	out := swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@example.com")
	m := okQID.FindStringSubmatch(replyTo(out, "."))
	if m == nil {
		t.Fatalf("end of data answered %q\n%s", replyTo(out, "."), out)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || msgs[0].ID.String() != m[1] {
		t.Errorf("the reply names %s, the queue holds %v", m[1], msgs)
	}
	log, _ := os.ReadFile(in.log)
	acc := regexp.MustCompile(`(?m)^info accepted sid=(\S+) msg=\S+ qid=` + m[1] + ` from=`).FindSubmatch(log)
	if acc == nil || !strings.Contains(string(log), "info queued qid="+m[1]+" sid="+string(acc[1])+" ") {
		t.Errorf("gw-queue's and gw-smtpd's lines do not both name %s and the session:\n%s", m[1], log)
	}
}

// TestQIDInSMTPReplyOfForeignInjector: a qmail-queue that knows nothing
// of GW_QIDFD still works; the reply names the message's id in gw-smtpd's
// log instead, as before.
func TestQIDInSMTPReplyOfForeignInjector(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	script := filepath.Join(in.dir, "qq")
	os.WriteFile(script, []byte("#!/bin/sh\nexec "+bin("gw-queue")+" 3>&-\n"), 0o755)
	addr := in.standalone(t, []string{"QMAILQUEUE=" + script})
	out := swaks(t, addr, "--from", "alice@sender.example", "--to", "bob@example.com")
	r := replyTo(out, ".")
	if !strings.HasPrefix(r, "250 2.0.0 ok ") || okQID.MatchString(r) {
		t.Fatalf("end of data answered %q, want 250 with the session's message id\n%s", r, out)
	}
	if n := len(in.messages(t)); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// TestQIDInQMTPK: gw-qmtpd's K names the queue id: "Kok <time> qp <qid>".
func TestQIDInQMTPK(t *testing.T) {
	in := newSMTPDInstance(t, nil)
	sock := filepath.Join(in.dir, "inject.sock")
	qd := startQueued(t, in.queue, sock)
	addr := in.qmtpdStandalone(t, []string{"GW_QUEUED=" + sock})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, qmtpPackage("Subject: k\n\nx\n", "a@sender.example", "b@example.com"))
	resp, _, err := qmtp.ReadString(bufio.NewReader(conn), qmtp.MaxResponse, qmtp.MaxResponse)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^Kok [0-9]+ qp ([0-9a-f]{13})$`).FindStringSubmatch(string(resp))
	if m == nil {
		t.Fatalf("K text %q, want Kok <time> qp <qid>", resp)
	}
	msgs := in.messages(t)
	if len(msgs) != 1 || msgs[0].ID.String() != m[1] {
		t.Errorf("K names %s, the queue holds %v", m[1], msgs)
	}
	waitFor(t, "gw-queued's queued line", 5*time.Second, func() bool {
		return strings.Contains(qd.stderr.String(), "info queued qid="+m[1]+" ")
	})
	log, _ := os.ReadFile(in.log)
	if !strings.Contains(string(log), " qid="+m[1]+" from=a@sender.example") {
		t.Errorf("gw-qmtpd's accepted line does not name %s:\n%s", m[1], log)
	}
}

// TestQIDThroughScanWrapper: with gw-scan as QMAILQUEUE the id still
// reaches the client, whichever way gw-scan ends: executing gw-queue
// (which inherits the descriptor) or handing the message to gw-queued
// (gw-scan writes what gw-queued named).
func TestQIDThroughScanWrapper(t *testing.T) {
	p := scanners(t)
	for _, viaSocket := range []bool{false, true} {
		t.Run(map[bool]string{false: "gw-queue", true: "gw-queued"}[viaSocket], func(t *testing.T) {
			in := newSMTPDInstance(t, map[string]string{"clamd": p.clamdSock + "\n", "spamd": p.spamdAddr + "\n"})
			env := []string{"QMAILQUEUE=" + bin("gw-scan"), "GW_CONTROL_DIR=" + in.control}
			if viaSocket {
				sock := filepath.Join(in.dir, "inject.sock")
				startQueued(t, in.queue, sock)
				env = append(env, "GW_QUEUED="+sock)
			}
			addr := in.standalone(t, env)
			r := sendMessage(t, addr, "a@sender.example", []string{"u@example.com"}, plainMessage("scanned", "hi\n"))
			m := okQID.FindStringSubmatch(r)
			if m == nil {
				t.Fatalf("end of data answered %q, want 250 2.0.0 ok <qid>", r)
			}
			msgs := in.messages(t)
			if len(msgs) != 1 || msgs[0].ID.String() != m[1] {
				t.Errorf("the reply names %s, the queue holds %v", m[1], msgs)
			}
		})
	}
}
