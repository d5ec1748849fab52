package handoff

import (
	"gw/lib/hops"
	"gw/lib/msgid"
	"gw/lib/tracehdr"
)

// MessageWriter passes a listener's stored message to its injector,
// counting its size (databytes counts the stored form, as qmail does) and
// its hops, picking out its Message-ID for the log as it passes, and stops passing once the message is over Limit: the rest is
// still read from the client, to answer it, but goes nowhere.
//
// Every X-Gw-Trace field is taken out of the header on the way (Trace
// keeps the first one's value): the field is the link between two gw
// instances, read at the face that takes the message and never queued,
// whoever sent it. End must be called once the message is over, before
// the injector commits, so that a last line start held back reaches it.
type MessageWriter struct {
	Tx    Tx    // nil: count only (no injector could be started)
	Limit int64 // 0: no limit
	Size  int64
	Over  bool
	Hops  hops.Counter
	ID    msgid.Finder
	Trace tracehdr.Stripper
}

// Write never fails: the client's message is read to its end whatever
// happens.
func (m *MessageWriter) Write(p []byte) (int, error) {
	m.Hops.Write(p)
	m.ID.Write(p)
	m.Size += int64(len(p))
	if m.Limit > 0 && m.Size > m.Limit {
		m.Over = true
	}
	m.Trace.Out = toTx{m}
	m.Trace.Write(p)
	return len(p), nil
}

// End passes on what the trace stripper held back: the start of a last
// line with no line end.
func (m *MessageWriter) End() {
	m.Trace.Out = toTx{m}
	m.Trace.Flush()
}

// toTx is what passes the stripper: on to the injector while the message
// is within its limit and there is one.
type toTx struct{ m *MessageWriter }

func (t toTx) Write(p []byte) (int, error) {
	if !t.m.Over && t.m.Tx != nil {
		t.m.Tx.Write(p)
	}
	return len(p), nil
}

// TraceFields are the accepted line's fields about the X-Gw-Trace field
// the message came with: prev=HOST/QID, the message's qid in the instance
// that handed it on, when peer (the ACL marks the client as a gw
// instance: GW_PEER) and the field is well formed; otherwise
// trace=untrusted or trace=malformed, so that a field taken out unbelieved
// still shows. Nothing when the message had none.
func (m *MessageWriter) TraceFields(peer bool) []any {
	switch {
	case m.Trace.Seen() == 0:
		return nil
	case !peer:
		return []any{"trace", "untrusted"}
	}
	l, ok := tracehdr.Parse(m.Trace.Value())
	if !ok {
		return []any{"trace", "malformed"}
	}
	return []any{"prev", l.String()}
}
