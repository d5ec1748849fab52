package sessiontest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"gw/lib/envelope"
	"gw/lib/handoff"
	"gw/lib/qq"
	"gw/lib/scan"
)

// Injector takes the session's messages in the queue injector's place.
// It reads the envelope back as gw-queue would, judges the message as
// gw-scan would when the client's mail goes through it, and says what
// the queue would have been given; it queues nothing, holds nothing in
// the quarantine and starts no program.
type Injector struct {
	Scan    *scan.Wrapper // nil: the client's mail is not scanned
	Explain func(string)
	// Broken is why the injector chain could not start (gw-scan cannot
	// read its control files): every message gets its exit code.
	Broken error
}

// Begin starts one message.
func (i *Injector) Begin(env envelope.Envelope) (handoff.Tx, error) {
	return &tx{i: i, env: env}, nil
}

type tx struct {
	i   *Injector
	env envelope.Envelope
	msg bytes.Buffer
}

func (t *tx) Write(p []byte) (int, error)       { return t.msg.Write(p) }
func (t *tx) SetEnvelope(env envelope.Envelope) { t.env = env }
func (t *tx) Abort()                            {}

// Commit gives the verdict the injector chain would give: a scan's
// refusal code, or OK with nothing written.
func (t *tx) Commit() (int, error) {
	if t.i.Broken != nil {
		return qq.ConfigError, t.i.Broken
	}
	// What the listener hands on is checked as gw-queue checks it.
	env, err := envelope.Read(bufio.NewReader(bytes.NewReader(t.env.Wire())))
	if err != nil {
		code := qq.ReadError
		if e := (*envelope.Error)(nil); errors.As(err, &e) {
			code = e.Code
		}
		t.i.Explain(fmt.Sprintf("queue: gw-queue would refuse the envelope: %v", err))
		return code, err
	}
	if t.i.Scan != nil {
		code, plan, rep := t.i.Scan.Judge(context.Background(), t.msg.Bytes(), env)
		t.explainScan(code, plan, rep)
		if code != qq.OK {
			return code, fmt.Errorf("scan: %s", scan.Reason(rep))
		}
		if len(plan.Deliver.Recipients) == 0 {
			t.i.Explain("queue: nothing queued (nothing left to deliver after the scan); a real session queues nothing either")
			return qq.OK, nil
		}
		env = plan.Deliver
	} else {
		t.i.Explain("scan: none: this client's mail does not go through gw-scan")
	}
	t.i.Explain(fmt.Sprintf("queue: not queued (session test): %d bytes from <%s> to %s would be handed to the queue",
		t.msg.Len(), env.Sender, "<"+strings.Join(env.Recipients, ">, <")+">"))
	return qq.OK, nil
}

// explainScan tells the verdict: each engine's word is in the verdict
// line the scanner logs (tapped into the explanations); this says what
// it does to the message.
func (t *tx) explainScan(code int, plan scan.Plan, rep *scan.Report) {
	switch code {
	case qq.Refused:
		t.i.Explain("scan: reject: " + scan.Reason(rep) + ": the message is refused (554)")
		return
	case qq.TemporaryRefusal:
		t.i.Explain("scan: tempfail: " + orPolicy(plan.Text, rep) + ": the message is deferred (451)")
		return
	}
	if len(rep.Classes) == 0 {
		t.i.Explain("scan: clean: delivered to every recipient")
		return
	}
	if n := len(plan.Held.Recipients); n > 0 {
		t.i.Explain(fmt.Sprintf("scan: %s: would be held in the quarantine for %d recipient(s) (not held: session test)", scan.Reason(rep), n))
	}
	if n := len(plan.Deliver.Recipients); n > 0 {
		t.i.Explain(fmt.Sprintf("scan: %s: delivered to %d recipient(s) with action %s", scan.Reason(rep), n, plan.Tag))
	}
	if dropped := len(plan.Acts) - len(plan.Held.Recipients) - len(plan.Deliver.Recipients); dropped > 0 {
		t.i.Explain(fmt.Sprintf("scan: %s: discarded for %d recipient(s)", scan.Reason(rep), dropped))
	}
}

func orPolicy(text string, rep *scan.Report) string {
	if text != "" {
		return text
	}
	return scan.Reason(rep)
}
