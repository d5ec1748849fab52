package handoff

import (
	"bytes"
	"fmt"
	"testing"
)

// bufTx is a Tx that keeps what it is given.
type bufTx struct{ bytes.Buffer }

func (b *bufTx) Commit() (int, error) { return 0, nil }
func (b *bufTx) Abort()               {}

// TestMessageWriterTrace: the X-Gw-Trace field never reaches the
// injector; the accepted line believes it from a peer only.
func TestMessageWriterTrace(t *testing.T) {
	const msg = "X-Gw-Trace: host=gw1.example.net qid=0669a1b2c3d4e\nSubject: s\n\nbody"
	for _, c := range []struct {
		msg  string
		peer bool
		want string
	}{
		{msg, true, "[prev gw1.example.net/0669a1b2c3d4e]"},
		{msg, false, "[trace untrusted]"},
		{"X-Gw-Trace: host=gw1 qid=../../etc\nSubject: s\n\nbody", true, "[trace malformed]"},
		{"Subject: s\n\nbody", true, "[]"},
	} {
		tx := &bufTx{}
		m := &MessageWriter{Tx: tx}
		for i := 0; i < len(c.msg); i += 5 {
			m.Write([]byte(c.msg[i:min(i+5, len(c.msg))]))
		}
		m.End()
		if tx.String() != "Subject: s\n\nbody" {
			t.Errorf("%q: the injector got %q", c.msg, tx.String())
		}
		if m.Size != int64(len(c.msg)) {
			t.Errorf("%q: size %d, want the client's %d", c.msg, m.Size, len(c.msg))
		}
		if got := fmt.Sprint(m.TraceFields(c.peer)); got != c.want {
			t.Errorf("%q peer=%v: fields %s, want %s", c.msg, c.peer, got, c.want)
		}
	}
}

// TestMessageWriterEndPassesHeldStart: a message ending inside a line's
// first bytes loses nothing.
func TestMessageWriterEndPassesHeldStart(t *testing.T) {
	tx := &bufTx{}
	m := &MessageWriter{Tx: tx}
	m.Write([]byte("Subject: s\nX-Gw"))
	m.End()
	if tx.String() != "Subject: s\nX-Gw" {
		t.Errorf("the injector got %q", tx.String())
	}
}
