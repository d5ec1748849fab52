package logtrace

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStamps(t *testing.T) {
	want := time.Date(2026, 12, 2, 2, 3, 15, 123456000, time.UTC)
	for _, s := range []string{
		"@400000006b0f7c6d075bca00 info queued qid=66a",
		"2026-12-02_02:03:15.12345600 info queued qid=66a",
	} {
		l, ok := Parse(s)
		if !ok || !l.Time.Equal(want) || l.Fields["qid"] != "66a" || l.Fields["event"] != "queued" {
			t.Errorf("%s: %v %v %v", s, ok, l.Time, l.Fields)
		}
	}
	for _, s := range []string{"info queued", "@40000000 info x", "@zz00000069fe484d075bca00 x", "@0000000069fe484d075bca00 x"} {
		if _, ok := Parse(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestTraceByQIDAndMessageID(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "current"), []byte(text), 0o644)
	}
	write("smtpd", "@4000000069fe484d00000001 info connect ip=127.0.0.1\n"+
		"@4000000069fe484d00000003 info accepted msg=s1.1 qid=aa1 from=a@b rcpts=1 size=90 chunked=no msgid=<m@x>\n"+
		"@4000000069fe484d00000004 info accepted msg=s1.2 qid=bb2 from=a@b rcpts=1 size=90 chunked=no msgid=<other@x>\n")
	write("queued", "@4000000069fe484d00000002 info queued qid=aa1 uid=0 pid=9\n")
	write("send", "@4000000069fe484e00000000 info delivery qid=aa1 rcpt=c@d result=delivered reply=\"250 2.0.0 Ok: queued as X\"\n"+
		"@4000000069fe484e00000001 info delivery qid=bb2 rcpt=c@d result=delivered reply=\"250 ok\"\n")
	var all []Line
	for _, s := range []string{"smtpd", "queued", "send"} {
		l, err := ReadDir(filepath.Join(dir, s), s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l...)
	}
	for _, id := range []string{"aa1", "<m@x>", "m@x"} {
		got := Trace(all, id)
		var ev []string
		for _, l := range got {
			ev = append(ev, l.Source+":"+l.Fields["event"])
		}
		if strings.Join(ev, " ") != "queued:queued smtpd:accepted send:delivery" {
			t.Errorf("%s: %v", id, ev)
		}
		if len(got) == 3 && got[2].Fields["reply"] != "250 2.0.0 Ok: queued as X" {
			t.Errorf("%s: reply %q", id, got[2].Fields["reply"])
		}
	}
	if got := Trace(all, "cc3"); len(got) != 0 {
		t.Errorf("unknown qid: %d lines", len(got))
	}
	if _, err := ReadDir(filepath.Join(dir, "none"), "none"); err == nil {
		t.Error("a directory without logs read without error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("@4000000069fe484d075bca00 info delivery qid=1 reply=\"250 \\\"x\" a=")
	f.Add("2026-12-02_02:03:15.1 warning x k=\"unterminated")
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := Parse(s)
		if ok && l.Fields == nil {
			t.Fatal("parsed without fields")
		}
	})
}

// TestTraceAcrossHops: the secondary's accepted line names the primary's
// qid in prev=; tracing either qid, or a third hop's, gives the whole
// chain and nothing of another message.
func TestTraceAcrossHops(t *testing.T) {
	text := "@4000000069fe484d00000001 info accepted msg=s1.1 qid=aa1 from=a@b rcpts=1 size=9\n" +
		"@4000000069fe484d00000002 info delivery qid=aa1 rcpt=c@d result=delivered reply=\"K ok 1 qp bb2\"\n" +
		"@4000000069fe484d00000003 info accepted msg=t1.1 qid=bb2 from=a@b rcpts=1 size=9 prev=gw1.example/aa1\n" +
		"@4000000069fe484d00000004 info delivery qid=bb2 rcpt=c@d result=deferred\n" +
		"@4000000069fe484d00000005 info accepted msg=u1.1 qid=cc3 from=a@b rcpts=1 size=9 prev=gw2.example/bb2\n" +
		"@4000000069fe484d00000006 info accepted msg=u1.2 qid=dd4 from=a@b rcpts=1 size=9 prev=gw2.example/\n" +
		"@4000000069fe484d00000007 info accepted msg=u1.3 qid=ee5 from=a@b rcpts=1 size=9 prev=gw9.example/ff6\n"
	var lines []Line
	for _, s := range strings.SplitAfter(text, "\n") {
		if l, ok := Parse(strings.TrimSuffix(s, "\n")); ok {
			lines = append(lines, l)
		}
	}
	for _, id := range []string{"aa1", "bb2", "cc3"} {
		var got []string
		for _, l := range Trace(lines, id) {
			got = append(got, l.Fields["event"]+":"+l.Fields["qid"])
		}
		if want := "accepted:aa1 delivery:aa1 accepted:bb2 delivery:bb2 accepted:cc3"; strings.Join(got, " ") != want {
			t.Errorf("trace %s: %v\nwant %s", id, got, want)
		}
	}
}

func TestAttempts(t *testing.T) {
	text := "2026-12-02_02:03:17.000000 info delivery qid=aa1 rcpt=b@slow dest=slow host=mx.slow result=deferred reply=\"mx.slow[192.0.2.1]:25 said: 421 later\"\n" +
		"2026-12-02_02:03:15.000000 info delivery qid=aa1 rcpt=b@slow dest=slow host=mx.slow result=deferred reply=\"connection refused\"\n" +
		"2026-12-02_02:03:16.000000 info delivery qid=aa1 rcpt=c@fast dest=fast host=mx.fast result=delivered reply=\"250 ok\"\n" +
		"2026-12-02_02:03:16.000000 info delivery qid=bb2 rcpt=b@slow result=delivered reply=\"250 ok\"\n" +
		"2026-12-02_02:03:16.000000 info queued qid=aa1 rcpt=b@slow\n"
	var lines []Line
	for _, s := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		l, ok := Parse(s)
		if !ok {
			t.Fatalf("%q did not parse", s)
		}
		lines = append(lines, l)
	}
	got := Attempts(lines, "aa1")
	if len(got) != 2 || len(got["b@slow"]) != 2 || len(got["c@fast"]) != 1 {
		t.Fatalf("attempts: %+v", got)
	}
	if a := got["b@slow"]; a[0].Reply != "connection refused" || a[1].Reply != "mx.slow[192.0.2.1]:25 said: 421 later" || a[1].Host != "mx.slow" || a[1].Result != "deferred" {
		t.Errorf("b@slow's attempts out of order or wrong: %+v", a)
	}
}

// TestTraceScopesQIDsByInstance: sec's queue drew for the message the
// qid that other's queue drew for another; tracing main's qid, or the
// Message-ID, follows the hop to sec and shows nothing of other's.
func TestTraceScopesQIDsByInstance(t *testing.T) {
	at := func(inst, text string) Line {
		l, ok := Parse(text)
		if !ok {
			t.Fatalf("%q did not parse", text)
		}
		l.Instance, l.Source = inst, inst+"/x"
		return l
	}
	lines := []Line{
		at("main", "@4000000069fe484d00000001 info accepted msg=s1.1 qid=aa1 size=9 msgid=<m@x>"),
		at("other", "@4000000069fe484d00000002 info accepted msg=s1.1 qid=bb2 size=7 msgid=<other@x>"),
		at("sec", "@4000000069fe484d00000003 info accepted msg=t1.1 qid=bb2 size=9 msgid=<m@x> prev=gw.example/aa1"),
		at("other", "@4000000069fe484d00000004 info delivery qid=bb2 rcpt=x@y result=delivered"),
		at("sec", "@4000000069fe484d00000005 info delivery qid=bb2 rcpt=c@d result=delivered"),
	}
	for _, id := range []string{"aa1", "<m@x>"} {
		var got []string
		for _, l := range Trace(lines, id) {
			got = append(got, l.Instance+":"+l.Fields["event"]+":"+l.Fields["qid"])
		}
		if want := "main:accepted:aa1 sec:accepted:bb2 sec:delivery:bb2"; strings.Join(got, " ") != want {
			t.Errorf("trace %s: %v\nwant %s", id, got, want)
		}
	}
}

// A qid brings the lines of the session that accepted it: connect, helo
// and end, and the MAIL and RCPT lines of its own transaction, not
// another message's. A message refused by a milter has no qid: its id in
// the session (msg=), its Message-ID or the session's id finds it. A bounce's qid brings
// the line of the message it reports on.
func TestTraceTakesTheSessionsLinesAndTheBounce(t *testing.T) {
	var all []Line
	for i, text := range []string{
		"info connect sid=s1 ip=127.0.0.1",
		"info helo sid=s1 helo=client",
		"info mail sid=s1 from=a@b result=accept",
		"info rcpt sid=s1 to=c@d result=accept",
		"info accepted sid=s1 msg=s1.1 qid=aa1 from=a@b rcpts=1",
		"info mail sid=s1 from=x@y result=accept",
		"info rcpt sid=s1 to=z@d result=accept",
		"info refused sid=s1 msg=s1.2 code=550 reason=milter milter=m1 msgid=<r@x>",
		"info end sid=s1 msgs=2 reason=quit",
		"info connect sid=s2 ip=127.0.0.2",
		"info delivery qid=aa1 rcpt=c@d result=failed status=5.1.1",
		"info bounce qid=aa1 bounce=bb2 to=a@b rcpts=1",
		"info new qid=bb2 from=\"\" rcpts=1",
	} {
		l, ok := Parse(fmt.Sprintf("@4000000069fe484d%08x %s", i, text))
		if !ok {
			t.Fatalf("%q does not parse", text)
		}
		all = append(all, l)
	}
	for _, c := range []struct{ id, want string }{
		{"aa1", "connect helo mail:a@b rcpt:c@d accepted end delivery bounce"},
		{"s1.2", "connect helo mail:x@y rcpt:z@d refused end"},
		{"<r@x>", "connect helo mail:x@y rcpt:z@d refused end"},
		{"s1", "connect helo mail:a@b rcpt:c@d accepted mail:x@y rcpt:z@d refused end delivery bounce"},
		{"bb2", "bounce new"},
	} {
		var ev []string
		for _, l := range Trace(all, c.id) {
			e := l.Fields["event"]
			if e == "mail" {
				e += ":" + l.Fields["from"]
			}
			if e == "rcpt" {
				e += ":" + l.Fields["to"]
			}
			ev = append(ev, e)
		}
		if got := strings.Join(ev, " "); got != c.want {
			t.Errorf("trace %s:\n got %s\nwant %s", c.id, got, c.want)
		}
	}
}
