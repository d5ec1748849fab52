package qstat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/queue"
)

// content is a stored message with a hostile header: an escape sequence
// that would recolour the terminal, a NUL, and CRLF line ends.
const content = "Received: (gw-queue 42 invoked by uid 107); 22 Nov 2026 11:58:00 -0000\n" +
	"Subject: hello\x1b[2J\r\n" +
	"X-Nul: a\x00b\n" +
	"\n" +
	"body line\n\tindented\x7f\n"

// TestShowGolden checks show's text form, each part alone and all
// together, against testdata/show-*.golden (go test -update rewrites them).
func TestShowGolden(t *testing.T) {
	reps := several()
	for _, tc := range []struct {
		name  string
		id    queue.ID
		parts Parts
	}{
		{"show", 0x669a1b2c3d4e3, Parts{}},
		{"show-envelope-hostile", 0x669a1b2c3d4e6, Parts{Envelope: true}},
		{"show-header-body", 0x669a1b2c3d4e1, Parts{Header: true, Body: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, m, err := Find(reps, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := Show(&got, r, m, nil, strings.NewReader(content), tc.parts); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, got.Bytes())
			if bytes.ContainsAny(got.Bytes(), "\x1b\x00\x7f") {
				t.Errorf("a control character reaches the terminal:\n%q", got.Bytes())
			}
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestFindUnknown(t *testing.T) {
	if _, _, err := Find(several(), 0x669a1b2c3d4ff); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Find of an id no queue holds: %v, want ErrNoMessage", err)
	}
}

// TestShowJSON checks that the JSON form carries the content byte for
// byte, control characters included (JSON escapes them), beside the
// listing's members.
func TestShowJSON(t *testing.T) {
	r, m, err := Find(several(), 0x669a1b2c3d4e3)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ShowJSON(&out, r, m, nil, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("not one line: %q", out.String())
	}
	var got struct {
		QueueID    string `json:"queue_id"`
		Instance   string `json:"instance"`
		Header     string `json:"header"`
		Body       string `json:"body"`
		Recipients []struct{ Address, State string }
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.QueueID != m.ID.String() || got.Instance != "main" || got.Header+got.Body != content {
		t.Errorf("show --json: %+v", got)
	}
	if len(got.Recipients) != len(m.Recipients) {
		t.Errorf("show --json: %d recipients, want %d", len(got.Recipients), len(m.Recipients))
	}
}

// A checksum failure met at the end of the content is returned, and the
// end marker is not written: what was shown may not be the message.
func TestShowCorrupt(t *testing.T) {
	r, m, _ := Find(several(), 0x669a1b2c3d4e1)
	var out bytes.Buffer
	err := Show(&out, r, m, nil, io.MultiReader(strings.NewReader(content), failing{queue.ErrCorrupt}), Parts{})
	if !errors.Is(err, queue.ErrCorrupt) || strings.Contains(out.String(), "*** end ***") {
		t.Errorf("corrupt content: err %v, output:\n%s", err, out.String())
	}
}

// FuzzSplitContent checks that splitting a message into header and body
// loses and adds nothing, whatever the message.
func FuzzSplitContent(f *testing.F) {
	f.Add([]byte(content))
	f.Add([]byte("no blank line\nat all"))
	f.Add([]byte("\n\nbody only"))
	f.Add([]byte(strings.Repeat("x", 70000) + "\n\nbody"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		header, body, err := splitContent(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		var rest []byte
		if body != nil {
			var b bytes.Buffer
			b.ReadFrom(body)
			rest = b.Bytes()
		}
		if got := append(header, rest...); !bytes.Equal(got, msg) {
			t.Errorf("header %q + body %q != %q", header, rest, msg)
		}
	})
}

// failing is a reader that fails with err, as a body reader does on a
// checksum mismatch.
type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }

// TestShowHistory: each attempt the logs hold follows its recipient, in
// text and in JSON; a log's bytes cannot steer the terminal.
func TestShowHistory(t *testing.T) {
	r, m, err := Find(several(), 0x669a1b2c3d4e3)
	if err != nil {
		t.Fatal(err)
	}
	rcpt := m.Recipients[0].Address
	at := time.Date(2026, 11, 22, 10, 31, 0, 0, time.UTC)
	hist := History{rcpt: {
		{Time: at, Result: "deferred", Host: "mx.slow.example", Reply: "connection refused\x1b[2J"},
		{Time: at.Add(time.Minute), Result: "deferred", Host: "mx.slow.example", Reply: "421 4.7.0 try later"},
	}}
	var out bytes.Buffer
	if err := Show(&out, r, m, hist, strings.NewReader(content), Parts{Envelope: true}); err != nil {
		t.Fatal(err)
	}
	want := "recipient attempt: 22 Nov 2026 10:31:00 GMT deferred mx.slow.example: connection refused_[2J\n" +
		"recipient attempt: 22 Nov 2026 10:32:00 GMT deferred mx.slow.example: 421 4.7.0 try later\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("show with history:\n%s\nwant the lines\n%s", out.String(), want)
	}
	out.Reset()
	if err := ShowJSON(&out, r, m, hist, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Recipients []struct {
			Address string
			History []struct {
				Time                int64
				Result, Host, Reply string
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	h := got.Recipients[0].History
	if len(h) != 2 || h[0].Time != at.Unix() || h[1].Reply != "421 4.7.0 try later" || h[0].Host != "mx.slow.example" {
		t.Errorf("show --json history: %+v", h)
	}
}

// TestShowOutcomeFields: the text names the last outcome's status,
// reply code, stage and remote host as --json does; a host name from a
// peer cannot start a line of its own.
func TestShowOutcomeFields(t *testing.T) {
	m := &queue.Message{ID: 0x669a1b2c3d4e9, Recipients: []queue.Recipient{{Address: "a@example.net", Attempts: 1,
		Outcome: queue.Outcome{Source: queue.FromReply, Code: 550, Status: "5.1.1", Text: "no such user", Stage: "RCPT TO",
			Host: "mx.example.net\nrecipient: <forged@x>", Addr: "192.0.2.1:25"}}}}
	var got bytes.Buffer
	if err := Show(&got, Report{Source: Source{Dir: "/q"}}, m, nil, nil, Parts{Envelope: true}); err != nil {
		t.Fatal(err)
	}
	want := `recipient outcome: status=5.1.1 reply_code=550 stage="RCPT TO" remote_host="mx.example.net\nrecipient: <forged@x>" remote_addr=192.0.2.1:25` + "\n"
	if !strings.Contains(got.String(), want) || strings.Contains(got.String(), "\nrecipient: <forged") {
		t.Errorf("got:\n%s\nwant the line:\n%s", got.String(), want)
	}
}
