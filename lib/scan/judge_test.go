package scan

import (
	"context"
	"strings"
	"testing"

	"gw/lib/envelope"
	"gw/lib/qq"
)

// TestJudge: the verdict Wrap acts on, with nothing held or handed on.
func TestJudge(t *testing.T) {
	exe := multipart("b", attachment("a.exe", "application/octet-stream", []byte("MZ")))
	cases := []struct {
		name    string
		policy  []string
		msg     string
		code    int
		deliver int
		held    int
		reason  string
	}{
		{"clean", nil, "Subject: s\n\nhi\n", qq.OK, 2, 0, "policy"},
		{"banned rejected", nil, exe, qq.Refused, 0, 0, "banned "},
		{"quarantine not held", []string{":banned:quarantine", "example.org:banned:tag"}, exe, qq.OK, 1, 1, "banned "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, log := testWrapper(t, c.policy...)
			e := envelope.Envelope{Sender: "a@x", Recipients: []string{"u@example.com", "v@example.org"}}
			code, plan, rep := w.Judge(context.Background(), []byte(c.msg), e)
			if code != c.code || len(plan.Deliver.Recipients) != c.deliver || len(plan.Held.Recipients) != c.held {
				t.Errorf("Judge = %d, deliver %v, held %v; want %d, %d, %d", code, plan.Deliver.Recipients, plan.Held.Recipients, c.code, c.deliver, c.held)
			}
			if !strings.HasPrefix(Reason(rep), c.reason) {
				t.Errorf("Reason = %q, want %q…", Reason(rep), c.reason)
			}
			if !strings.Contains(log.String(), "info verdict scan=") || !strings.Contains(log.String(), " code=") {
				t.Errorf("no verdict line with the code:\n%s", log)
			}
			if held, _, _ := w.Quarantine.List(); len(held) != 0 {
				t.Errorf("Judge held %d messages", len(held))
			}
		})
	}
}
