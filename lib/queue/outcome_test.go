package queue

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// An 'R' record of an older gw is read as a text outcome whose status is
// the one its line ended with; the journal gw writes now has 'O' records
// whose fields come back as they went in.
func TestJournalOutcomeRecords(t *testing.T) {
	reply := Outcome{Source: FromReply, Code: 550, Status: "5.1.1", Text: "5.1.1 no such user",
		Host: "mx.example", Addr: "192.0.2.7:25", Stage: "RCPT TO", DotSent: false}
	lost := Outcome{Source: FromConn, Status: "4.4.2", Text: "read: connection reset by peer",
		Host: "mx.example", Addr: "[2001:db8::1]:25", Stage: "end of data", DotSent: true, Note: "possible duplicate"}
	b := []byte(jnlMagic)
	b = jrec{Kind: jRecipient, ID: 1, Index: 0, State: Failed, Attempts: 2,
		Out: Outcome{Source: FromText, Text: "mx said: 550 sorry (#5.7.1)"}}.encode(b)
	b = jrec{Kind: jRecipient, ID: 1, Index: 1, State: Pending, Attempts: 1,
		Out: Outcome{Source: FromText, Text: "connection refused"}}.encode(b)
	b = jrec{Kind: jOutcome, ID: 2, Index: 0, State: Failed, Attempts: 1, Out: reply}.encode(b)
	b = jrec{Kind: jOutcome, ID: 2, Index: 1, State: Pending, Attempts: 1, Next: 77, Out: lost}.encode(b)
	var got []string
	p, err := readJournal(bytes.NewReader(b), func(r jrec) {
		got = append(got, fmt.Sprintf("%c %d/%d %s status=%s dot=%v", r.Kind, r.ID, r.Index, r.Out, r.Out.Status, r.Out.DotSent))
		if r.ID == 2 && r.Index == 0 && r.Out != reply || r.ID == 2 && r.Index == 1 && r.Out != lost {
			t.Errorf("outcome %+v changed on its way through the journal", r.Out)
		}
	})
	if p != nil || err != nil {
		t.Fatalf("problem %v, error %v", p, err)
	}
	want := []string{
		"O 1/0 mx said: 550 sorry (#5.7.1) status=5.7.1 dot=false",
		"O 1/1 connection refused status=4.0.0 dot=false",
		"O 2/0 mx.example[192.0.2.7]:25 said: 550 5.1.1 no such user (in reply to RCPT TO) (#5.1.1) status=5.1.1 dot=false",
		"O 2/1 mx.example[2001:db8::1]:25: read: connection reset by peer (during end of data) (possible duplicate) (#4.4.2) status=4.4.2 dot=true",
	}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Errorf("record %d:\n got %q\nwant %q", i, got, want[i])
		}
	}
	if os.Getenv("GW_WRITE_CORPUS") != "" {
		os.WriteFile("testdata/fuzz/FuzzReadJournal/outcome", []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644)
	}
}

// A status the text of an old record ends with counts only in the class
// of the recipient's state, and only when it is one.
func TestTextOutcomeStatus(t *testing.T) {
	for _, c := range []struct {
		text  string
		state State
		want  string
	}{
		{"x (#5.1.2)", Failed, "5.1.2"},
		{"x (#4.4.1)", Failed, "5.0.0"},
		{"x (#4.4.1)", Pending, "4.4.1"},
		{"10.5.4.1 refused (#4.x.1)", Pending, "4.0.0"},
		{"", Pending, ""},
	} {
		if got := TextOutcome(c.text, c.state).Status; got != c.want {
			t.Errorf("TextOutcome(%q, %v).Status = %q, want %q", c.text, c.state, got, c.want)
		}
	}
}
