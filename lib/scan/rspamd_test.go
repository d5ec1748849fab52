package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"gw/lib/envelope"
)

func TestParseRspamdReply(t *testing.T) {
	res, err := ParseRspamdReply([]byte(`{"is_skipped":false,"score":7.0,"required_score":15.0,"action":"add header",
		"symbols":{"B":{"name":"B"},"A":{"name":"A"}},"messages":{"smtp_message":"go away"},
		"milter":{"add_headers":{"X-One":"1","X-Two":{"value":"2","order":0},"X-Many":[{"value":"a"},{"value":"b\nc"}]},
		"remove_headers":{"X-Old":0,"X-Last":-1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != RspamdAddHeader || res.Score != 7 || res.Required != 15 || strings.Join(res.Symbols, ",") != "A,B" || res.Message != "go away" {
		t.Errorf("%+v", res)
	}
	var lines []string
	for _, f := range res.AddHeaders {
		lines = append(lines, f.FieldLine())
	}
	if got := strings.Join(lines, ""); got != "X-Many: a\nX-Many: b\n\tc\nX-One: 1\nX-Two: 2\n" {
		t.Errorf("fields %q", got)
	}
	if res.RemoveHeaders["x-old"] != 0 || res.RemoveHeaders["x-last"] != -1 || len(res.RemoveHeaders) != 2 {
		t.Errorf("remove %v", res.RemoveHeaders)
	}
	for _, bad := range []string{
		``, `{}`, `{"action":"maybe"}`, `{"error":"oops","action":"no action"}`,
		`{"action":"no action","milter":{"add_headers":{"X-Bad: name":"v"}}}`,
		`{"action":"no action","milter":{"add_headers":{"X-A":7}}}`,
		`{"action":"no action","milter":{"remove_headers":{"X-A":"all"}}}`,
		`{"action":"no action","milter":{"remove_headers":{"X-A":1.5}}}`,
	} {
		if _, err := ParseRspamdReply([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRewriteDrop(t *testing.T) {
	// X-Spam-Flag and X-Rspamd-Status are forgeable verdicts: always dropped.
	in := "Received: one\nX-A: 1\nX-Spam-Flag: YES\nX-A: 2\n long\nX-Rspamd-Status: no action\nSubject: s\nX-A: 3\n\nX-A: body\n"
	for _, c := range []struct {
		drop map[string]int
		want string
	}{
		{map[string]int{"x-a": 0}, "Received: one\nSubject: s\n\nX-A: body\n"},
		{map[string]int{"x-a": 2}, "Received: one\nX-A: 1\nSubject: s\nX-A: 3\n\nX-A: body\n"},
		{map[string]int{"x-a": -1}, "Received: one\nX-A: 1\nX-A: 2\n long\nSubject: s\n\nX-A: body\n"},
		{map[string]int{"x-a": -3, "subject": 0}, "Received: one\nX-A: 2\n long\nX-A: 3\n\nX-A: body\n"},
		{map[string]int{"x-a": 9}, "Received: one\nX-A: 1\nX-A: 2\n long\nSubject: s\nX-A: 3\n\nX-A: body\n"},
	} {
		var out bytes.Buffer
		if err := RewriteDrop(&out, strings.NewReader(in), []string{"New: 1\n"}, c.drop, int64(len(in))); err != nil {
			t.Fatal(err)
		}
		if want := "New: 1\n" + c.want; out.String() != want {
			t.Errorf("drop %v: %q, want %q", c.drop, out.String(), want)
		}
	}
}

func TestClientFromReceived(t *testing.T) {
	for _, c := range []struct{ msg, ip, host, helo string }{
		{"Received: from mx.example (HELO box) (10.0.0.1)\n  by gw.example (gw-smtpd) with ESMTP id abc.1; 1 Jan 2026\nX: y\n", "10.0.0.1", "mx.example", "box"},
		{"Received: from unknown (u@::ffff:192.0.2.7)\n  by gw.example (gw-smtpd) with SMTP id abc.1; 1 Jan 2026\n", "192.0.2.7", "", ""},
		{"Received: from mx.example (192.0.2.7)\n  by gw.example (gw-smtpd) with SMTP id abc.1; 1 Jan 2026\n", "192.0.2.7", "mx.example", "mx.example"},
		// A sender's own field, not gw-smtpd's: nothing is taken from it.
		{"Received: from mx.example (192.0.2.7)\n  by other.example with SMTP id abc.1; 1 Jan 2026\n", "", "", ""},
		{"Subject: x\nReceived: from mx.example (192.0.2.7)\n  by gw.example (gw-smtpd) with SMTP id abc.1; x\n", "", "", ""},
	} {
		ip, host, helo := clientFromReceived(strings.NewReader(c.msg))
		if ip != c.ip || host != c.host || helo != c.helo {
			t.Errorf("%.40q: %q %q %q, want %q %q %q", c.msg, ip, host, helo, c.ip, c.host, c.helo)
		}
	}
}

// rspamdStub is an HTTP server on loopback answering /checkv2 with reply
// and keeping what it was sent: for the cases a real rspamd is not asked
// to produce (bad JSON, HTTP errors, silence); the real one is in the
// end-to-end tests.
func rspamdStub(t *testing.T, status int, reply string, delay time.Duration) (string, *http.Request) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := &http.Request{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		*got = *r.Clone(context.Background())
		time.Sleep(delay)
		w.WriteHeader(status)
		io.WriteString(w, reply)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), got
}

func TestRspamdCheckErrors(t *testing.T) {
	msg := "Subject: x\n\nhi\n"
	ok, _ := json.Marshal(map[string]any{"action": "no action", "score": 1})
	for _, c := range []struct {
		name   string
		status int
		reply  string
		delay  time.Duration
		ok     bool
	}{
		{"answers", 200, string(ok), 0, true},
		{"HTTP 500", 500, `{"error":"internal"}`, 0, false},
		{"not JSON", 200, "<html>", 0, false},
		{"too slow", 200, string(ok), 2 * time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got := rspamdStub(t, c.status, c.reply, c.delay)
			r := &Rspamd{Addr: addr, Timeout: 500 * time.Millisecond}
			res, err := r.Check(context.Background(), strings.NewReader(msg), int64(len(msg)),
				Meta{Rcpts: []string{"a@x.example", "b@x.example"}, IP: "192.0.2.1", Helo: "h\r\nX-Injected: 1"})
			if (err == nil) != c.ok {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
			if c.ok {
				if res.Action != RspamdNoAction || got.Header.Get("From") != "<>" || len(got.Header.Values("Rcpt")) != 2 ||
					got.Header.Get("Helo") != "hX-Injected: 1" || got.Header.Get("X-Injected") != "" || got.URL.Path != "/checkv2" {
					t.Errorf("%+v, sent %v", res, got.Header)
				}
			}
		})
	}
	r := &Rspamd{Addr: "127.0.0.1:1", Timeout: time.Second, MaxSize: 4}
	if _, err := r.Check(context.Background(), strings.NewReader(msg), int64(len(msg)), Meta{}); err != ErrTooBig {
		t.Errorf("over rspamdmaxbytes: %v", err)
	}
}

// TestPlanDefer: rspamd's greylist is a 451 with its text, whatever the
// per-domain policy; a reject of another engine is stronger.
func TestPlanDefer(t *testing.T) {
	s := &Scanner{Policy: &Policy{}, Rspamd: &Rspamd{}}
	e := envelope.Envelope{Sender: "a@x.example", Recipients: []string{"u@example.com"}}
	rep := &Report{Rspamd: &RspamdResult{Action: RspamdGreylist}}
	rspamdClasses(rep, map[string]bool{})
	if p := s.Plan(rep, e); p.Refuse != Tempfail || p.Text != "greylisted, try again later" {
		t.Errorf("greylist: %+v", p)
	}
	rep.Classes = []string{ClassVirus}
	if p := s.Plan(rep, e); p.Refuse != Reject {
		t.Errorf("greylist and virus: %+v", p)
	}
}

func FuzzParseRspamdReply(f *testing.F) {
	f.Add([]byte(`{"action":"add header","score":7,"required_score":15,"symbols":{"A":{}},"milter":{"add_headers":{"X-A":[{"value":"1"}]},"remove_headers":{"X-B":-1}}}`))
	f.Add([]byte(`{"action":"reject","messages":{"smtp_message":"Gtube pattern"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ParseRspamdReply(b)
		if err != nil {
			return
		}
		for _, h := range res.AddHeaders {
			l := h.FieldLine()
			// One field: a name, then only folded continuations.
			if strings.Count(l, "\n") != strings.Count(l, "\n\t")+1 || !validFieldName(h.Name) {
				t.Fatalf("field %q", l)
			}
		}
	})
}
