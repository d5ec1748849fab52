package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gw/lib/dsn"
	"gw/lib/envelope"
)

// dsnEnvelope has DSN parameters for the message and for the second of
// three recipients.
func dsnEnvelope() envelope.Envelope {
	e := envelope.Envelope{Sender: "alice@example.org", DSN: dsn.Mail{Ret: dsn.RetHdrs, EnvID: "QQ 314+159"}}
	e.Add("bob@example.net", dsn.Rcpt{})
	e.Add("carol@example.net", dsn.Rcpt{Notify: dsn.NotifySuccess | dsn.NotifyFailure, ORcptType: "rfc822", ORcpt: "carol+list@example.net"})
	e.Add("dave@example.net", dsn.Rcpt{})
	return e
}

func checkDSN(t *testing.T, m *Message) {
	t.Helper()
	want := dsnEnvelope()
	if m.DSN != want.DSN {
		t.Errorf("message DSN %+v, want %+v", m.DSN, want.DSN)
	}
	if len(m.Recipients) != 3 {
		t.Fatalf("%d recipients, want 3", len(m.Recipients))
	}
	for i, rc := range m.Recipients {
		if rc.Address != want.Recipients[i] || rc.DSN != want.RcptDSNOf(i) {
			t.Errorf("recipient %d: %q %+v, want %q %+v", i, rc.Address, rc.DSN, want.Recipients[i], want.RcptDSNOf(i))
		}
	}
}

// TestDSNStoredByBothInjectors: what a client asked in RET, ENVID, NOTIFY
// and ORCPT comes back out of the queue, through a segment of its own
// (gw-queue) and a shared one (gw-queued).
func TestDSNStoredByBothInjectors(t *testing.T) {
	q := newQueue(t)
	inject(t, q, []byte("Subject: one\n\nbody\n"), dsnEnvelope())
	c := q.NewCommitter()
	in := c.NewIncoming(0, 1)
	in.Write([]byte("Subject: two\n\nbody\n"))
	if err := c.Commit(in, dsnEnvelope()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	snap, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 2 || len(snap.Problems) != 0 {
		t.Fatalf("%d messages, problems %v", len(snap.Messages), snap.Problems)
	}
	for _, m := range snap.Messages {
		checkDSN(t, m)
	}
}

// TestSegmentBeforeDSN: a segment written by gw-queue before envelopes
// carried DSN items (testdata/seg-before-dsn, a file as that gw-queue
// wrote it) reads as it did, with no DSN parameters.
func TestSegmentBeforeDSN(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "seg-before-dsn"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []Record
	_, problem, err := ReadSegment(f, func(r Record) error { recs = append(recs, r); return nil })
	if err != nil || problem != nil {
		t.Fatalf("ReadSegment: %v, %v", problem, err)
	}
	if len(recs) != 2 || recs[0].Kind != kindMessage || recs[1].Kind != kindSeal {
		t.Fatalf("records %+v, want a message and a seal", recs)
	}
	e := recs[0].Envelope
	if e.Sender != "alice@example.org" || len(e.Recipients) != 2 || e.Recipients[1] != "carol@example.net" {
		t.Errorf("envelope %+v", e)
	}
	if !e.DSN.IsZero() || e.RcptDSN != nil {
		t.Errorf("DSN parameters read from a file that has none: %+v %+v", e.DSN, e.RcptDSN)
	}
	if string(e.Stored()) != "Falice@example.org\x00Tbob@example.net\x00Tcarol@example.net\x00" {
		t.Errorf("stored again as %q", e.Stored())
	}
}

// TestSegmentWithBadDSNItem: DSN parameters in a segment are checked as
// a client's are; a record whose N item NOTIFY=NEVER,SUCCESS could not
// have come from gw-queue is corrupt, and the reader says so.
func TestSegmentWithBadDSNItem(t *testing.T) {
	var seg bytes.Buffer
	seg.WriteString(segMagic)
	e := encoder{w: &seg}
	e.begin(header{ID: 1, Arrival: time.Unix(1, 0)})
	e.chunk([]byte("Subject: x\n\nbody\n"))
	e.finish([]byte("Fa@example.org\x00Tb@example.net\x00NNOTIFY=NEVER,SUCCESS\x00"))
	_, problem, err := ReadSegment(&seg, func(Record) error { return nil })
	if err != nil || problem == nil || problem.Incomplete || !strings.Contains(problem.Reason, "NOTIFY=NEVER with other keywords") {
		t.Fatalf("problem %v, err %v; want a corrupt record naming NOTIFY", problem, err)
	}
}
