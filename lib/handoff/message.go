package handoff

import (
	"gw/lib/hops"
	"gw/lib/msgid"
)

// MessageWriter passes a listener's stored message to its injector,
// counting its size (databytes counts the stored form, as qmail does) and
// its hops, picking out its Message-ID for the log as it passes, and stops passing once the message is over Limit: the rest is
// still read from the client, to answer it, but goes nowhere.
type MessageWriter struct {
	Tx    Tx    // nil: count only (no injector could be started)
	Limit int64 // 0: no limit
	Size  int64
	Over  bool
	Hops  hops.Counter
	ID    msgid.Finder
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
	if !m.Over && m.Tx != nil {
		m.Tx.Write(p)
	}
	return len(p), nil
}
