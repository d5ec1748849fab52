package qstat

import (
	"strings"
	"testing"
	"time"
)

// FuzzReadFleet: a host's file is from another machine; whatever it
// holds, ReadFleet either refuses it whole or returns messages whose
// summary and shape can be written.
func FuzzReadFleet(f *testing.F) {
	f.Add(`{"queue_name":"active","queue_id":"0000000000001","arrival_time":1,"message_size":10,"sender":"a@b","recipients":[{"address":"c@d","state":"pending","attempts":0}],"held":false}` + "\n")
	f.Add(`{"queue_name":"incoming","queue_id":"zz"}`)
	f.Add(`{"queue_id":"0000000000002","recipients":[{"state":"lost"}]}`)
	f.Add("\n\n{}\n")
	f.Fuzz(func(t *testing.T, s string) {
		r := ReadFleet("h", strings.NewReader(s))
		if r.Err != nil {
			if len(r.Messages) != 0 {
				t.Fatal("a refused file still has messages")
			}
			return
		}
		var b strings.Builder
		if err := Summary(&b, []Report{r}); err != nil {
			t.Fatal(err)
		}
		if err := FleetShape(&b, []Report{r}, time.Unix(1e9, 0), ByRecipient); err != nil {
			t.Fatal(err)
		}
	})
}
