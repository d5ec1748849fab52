package qstat

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/queue"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// now is the fixed moment the fixtures are looked at.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

// longAddress is as long as an envelope may carry (envelope.MaxAddress).
var longAddress = strings.Repeat("l", 990) + "@example.org"

// fixture is a queue with a message in every state and the addresses a
// hostile peer could get into an envelope.
func fixture() *queue.Snapshot {
	return &queue.Snapshot{
		Messages: []*queue.Message{
			{ID: 0x669a1b2c3d4e1, Arrival: ago(2 * time.Minute), Size: 2195, Sender: "alice@example.org",
				Recipients: []queue.Recipient{{Address: "bob@example.net"}, {Address: "carol@Example.NET"}}},
			{ID: 0x669a1b2c3d4e2, Arrival: ago(7 * time.Minute), Size: 848, Sender: "alice@example.org", Picked: true,
				Recipients: []queue.Recipient{{Address: "dave@example.com"}}},
			{ID: 0x669a1b2c3d4e3, Arrival: ago(90 * time.Minute), Size: 12000, Sender: "list-bounces@lists.example.org", Picked: true,
				Recipients: []queue.Recipient{
					{Address: "erin@example.com", State: queue.Delivered, Attempts: 1},
					{Address: "frank@slow.example", Attempts: 3, NextTry: now.Add(20 * time.Minute), Outcome: queue.Outcome{
						Source: queue.FromReply, Code: 421, Status: "4.7.0", Text: "4.7.0 try later", Host: "mx.slow.example",
						Addr: "192.0.2.25:25", Stage: "RCPT TO", DotSent: false}},
				}},
			{ID: 0x669a1b2c3d4e4, Arrival: ago(30 * time.Hour), Size: 500, Sender: "alice@example.org", Picked: true, Held: true,
				Recipients: []queue.Recipient{{Address: "grace@example.net"}}},
			{ID: 0x669a1b2c3d4e5, Arrival: ago(5 * time.Minute), Size: 1200, Sender: "", Picked: true,
				Recipients: []queue.Recipient{
					{Address: "heidi@example.net", State: queue.Failed, Attempts: 1, Outcome: queue.Outcome{Text: "550 5.1.1 no such user"}},
					{Address: "ivan@example.net", State: queue.Delivered, Attempts: 2},
				}},
			{ID: 0x669a1b2c3d4e6, Arrival: ago(25 * time.Hour), Size: 77, Sender: "ev\x1b[2Jil@x\ty", Picked: true,
				Recipients: []queue.Recipient{
					{Address: "a b@example.net", Attempts: 1, Outcome: queue.Outcome{Text: "451 line one\nforged: line two\r"}},
					{Address: "\xff\xfe@EXAMPLE.net"},
					{Address: longAddress},
					{Address: "postmaster"},
				}},
			{ID: 0x669a1b2c3d4e7, Arrival: now.Add(time.Minute), Size: 10, Sender: "#@[]",
				Recipients: []queue.Recipient{{Address: "postmaster@example.org"}}},
		},
		InProgress: 2,
		Problems: []queue.FileProblem{
			{File: "seg/669a1b2c3d4e0", Offset: 4096, Reason: "checksum mismatch", Corrupt: true},
			{File: "seg/notes.txt", Reason: "foreign file (name is not a queue id)", Corrupt: true},
		},
		SetAside: []string{"669a1b2c3d400"},
	}
}

func one() []Report { return []Report{{Source{Dir: "/var/gw/main/queue"}, fixture(), nil}} }

// several is an empty instance, a broken one and the fixture.
func several() []Report {
	return []Report{
		{Source{Instance: "bounce", Dir: "/var/gw/bounce/queue"}, &queue.Snapshot{}, nil},
		{Source{Instance: "broken", Dir: "/var/gw/broken/queue"}, &queue.Snapshot{}, errors.New("unknown queue format")},
		{Source{Instance: "main", Dir: "/var/gw/main/queue"}, fixture(), nil},
	}
}

// TestGolden checks every format against testdata/NAME.golden; run
// go test -update to rewrite them after a deliberate change, then read
// the diff.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"summary", func(b *bytes.Buffer) error { return Summary(b, one()) }},
		{"summary-several", func(b *bytes.Buffer) error { return Summary(b, several()) }},
		{"list", func(b *bytes.Buffer) error { return List(b, one()) }},
		{"list-several", func(b *bytes.Buffer) error { return List(b, several()) }},
		{"json", func(b *bytes.Buffer) error { return JSON(b, one()) }},
		{"json-several", func(b *bytes.Buffer) error { return JSON(b, several()) }},
		{"shape", func(b *bytes.Buffer) error { return Shape(b, one(), now, ByRecipient) }},
		{"shape-sender", func(b *bytes.Buffer) error { return Shape(b, one(), now, BySender) }},
		{"shape-several", func(b *bytes.Buffer) error { return Shape(b, several(), now, ByRecipient) }},
		{"metrics", func(b *bytes.Buffer) error { return Metrics(b, one(), now) }},
		{"metrics-several", func(b *bytes.Buffer) error { return Metrics(b, several(), now) }},
		{"problems", func(b *bytes.Buffer) error {
			for _, p := range Problems(one()) {
				b.WriteString(p + "\n")
			}
			return nil
		}},
		{"empty-summary", func(b *bytes.Buffer) error { return Summary(b, nil) }},
		{"empty-list", func(b *bytes.Buffer) error { return List(b, nil) }},
		{"empty-shape", func(b *bytes.Buffer) error {
			return Shape(b, []Report{{Source{Dir: "q"}, &queue.Snapshot{}, nil}}, now, ByRecipient)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			if err := tc.write(&got); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs from %s:\ngot:\n%s\nwant:\n%s", tc.name, path, got.Bytes(), want)
			}
		})
	}
}

// TestTextOutputIsSafe: no peer-chosen byte may reach a terminal or a
// line-based parser as a control character, in any text format.
func TestTextOutputIsSafe(t *testing.T) {
	for name, write := range map[string]func(*bytes.Buffer) error{
		"summary": func(b *bytes.Buffer) error { return Summary(b, several()) },
		"list":    func(b *bytes.Buffer) error { return List(b, several()) },
		"shape":   func(b *bytes.Buffer) error { return Shape(b, several(), now, ByRecipient) },
		"sender":  func(b *bytes.Buffer) error { return Shape(b, several(), now, BySender) },
		"metrics": func(b *bytes.Buffer) error { return Metrics(b, several(), now) },
		"json":    func(b *bytes.Buffer) error { return JSON(b, several()) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		for i, c := range b.Bytes() {
			if c != '\n' && c != '\t' && (c < 32 || c > 126) {
				t.Errorf("%s: byte %#02x at offset %d", name, c, i)
				break
			}
		}
	}
}

// TestJSONRoundTrip: every line is one object that gives back the bytes
// the queue holds (those that are valid UTF-8).
func TestJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, one()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	msgs := fixture().Messages
	if len(lines) != len(msgs) {
		t.Fatalf("%d lines, want %d", len(lines), len(msgs))
	}
	for i, line := range lines {
		var got jsonMessage
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		m := msgs[i]
		if got.QueueID != m.ID.String() || got.Sender != m.Sender || len(got.Recipients) != len(m.Recipients) {
			t.Errorf("line %d: id %s sender %q %d recipients; want %s %q %d", i+1,
				got.QueueID, got.Sender, len(got.Recipients), m.ID, m.Sender, len(m.Recipients))
		}
		if i == 5 && (got.Recipients[0].Address != "a b@example.net" || got.Recipients[2].Address != longAddress ||
			got.Recipients[0].DelayReason != "451 line one\nforged: line two\r") {
			t.Errorf("hostile message: %+v", got.Recipients)
		}
	}
}

func TestStateOf(t *testing.T) {
	tests := []struct {
		name string
		m    queue.Message
		want MsgState
	}{
		{"not picked up", queue.Message{Recipients: []queue.Recipient{{}}}, Incoming},
		{"picked, untried", queue.Message{Picked: true, Recipients: []queue.Recipient{{}}}, Active},
		{"delivered one, other untried", queue.Message{Picked: true, Recipients: []queue.Recipient{{State: queue.Delivered, Attempts: 1}, {}}}, Active},
		{"tried and pending", queue.Message{Picked: true, Recipients: []queue.Recipient{{Attempts: 1}}}, Deferred},
		{"held wins over deferred", queue.Message{Picked: true, Held: true, Recipients: []queue.Recipient{{Attempts: 1}}}, Hold},
		{"all finished", queue.Message{Picked: true, Recipients: []queue.Recipient{{State: queue.Failed}, {State: queue.Delivered}}}, Done},
		{"no recipients", queue.Message{Picked: true}, Done},
		{"tried, no pick mark", queue.Message{Recipients: []queue.Recipient{{Attempts: 1}}}, Deferred},
		{"finished, no pick mark", queue.Message{Recipients: []queue.Recipient{{State: queue.Delivered}}}, Done},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := StateOf(&tc.m); got != tc.want {
				t.Errorf("StateOf(%+v) = %v, want %v", tc.m, got, tc.want)
			}
		})
	}
}

func TestShapeBuckets(t *testing.T) {
	tests := []struct {
		age  time.Duration
		want int // index in counts: 1 is "5", 10 is "1280+"
	}{
		{0, 1}, {-time.Hour, 1}, {4*time.Minute + 59*time.Second, 1}, {5 * time.Minute, 2},
		{639 * time.Minute, 8}, {640 * time.Minute, 9}, {1279 * time.Minute, 9},
		{1280 * time.Minute, 10}, {30 * 24 * time.Hour, 10},
	}
	for _, tc := range tests {
		m := &queue.Message{Arrival: now.Add(-tc.age), Recipients: []queue.Recipient{{Address: "x@y"}}}
		rows := shapeRows([]*queue.Message{m}, now, ByRecipient)
		if rows[0].counts[tc.want] != 1 || rows[0].counts[0] != 1 {
			t.Errorf("age %v: counts %v, want a 1 at %d", tc.age, rows[0].counts, tc.want)
		}
	}
}

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "",
		"plain@example.org":    "plain@example.org",
		"a b@c":                "a b@c",
		"\x00\x1f\x7f\x80\xff": "_____",
		"é@x":                  "__@x",
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Instance: "main", Dir: "/var/gw/main/queue"}, "main"},
		{Source{Dir: "/var/gw/out/queue/"}, "out"},
		{Source{Dir: "/srv/q"}, "/srv/q"},
		{Source{Dir: "queue"}, "queue"},
	} {
		if got := tc.src.Label(); got != tc.want {
			t.Errorf("%+v.Label() = %q, want %q", tc.src, got, tc.want)
		}
	}
}
