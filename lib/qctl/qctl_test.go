package qctl

import (
	"testing"
	"time"

	"gw/lib/queue"
)

func TestMatch(t *testing.T) {
	now := time.Unix(1e9, 0)
	m := &queue.Message{ID: 7, Arrival: now.Add(-2 * time.Hour), Sender: "Alice@Example.org", Recipients: []queue.Recipient{
		{Address: "bob@dead.test", State: queue.Pending, Outcome: queue.Outcome{Text: "connection refused"}},
		{Address: "carol@live.test", State: queue.Delivered},
	}}
	cases := []struct {
		name string
		sel  Selection
		want bool
	}{
		{"id", Selection{IDs: []queue.ID{7}}, true},
		{"other id", Selection{IDs: []queue.ID{8}}, false},
		{"sender any case", Selection{Sender: "alice@example"}, true},
		{"domain of a pending recipient", Selection{Domain: "DEAD.test"}, true},
		{"domain of a delivered recipient", Selection{Domain: "live.test"}, false},
		{"recipient", Selection{Recipient: "bob@"}, true},
		{"older", Selection{Older: time.Hour}, true},
		{"not older", Selection{Older: 3 * time.Hour}, false},
		{"error", Selection{Error: "refused"}, true},
		{"error and domain disagree", Selection{Error: "refused", Domain: "live.test"}, false},
	}
	for _, c := range cases {
		if got := c.sel.Match(m, now); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
	if !(&Selection{}).Empty() {
		t.Error("an empty selection is not Empty")
	}
}

func TestParseRequest(t *testing.T) {
	a, ids, err := ParseRequest(FormatRequest(Remove, []queue.ID{1, 0x660d6b7ec9f99}))
	if err != nil || a != Remove || len(ids) != 2 || ids[1] != 0x660d6b7ec9f99 {
		t.Fatalf("round trip: %q %v %v", a, ids, err)
	}
	for _, bad := range []string{"", "explode\n", "hold\nnot-an-id\n"} {
		if _, _, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) succeeded", bad)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("hold\n0000000000001\n"))
	f.Add([]byte("remove\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ids, err := ParseRequest(b)
		if err != nil {
			return
		}
		a2, ids2, err := ParseRequest(FormatRequest(a, ids))
		if err != nil || a2 != a || len(ids2) != len(ids) {
			t.Fatalf("%q does not round-trip: %v", b, err)
		}
	})
}
