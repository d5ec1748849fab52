package qstat

import (
	"bufio"
	"io"
	"strconv"

	"gw/lib/queue"
)

// List writes qmail-qread's listing, extended with what gw records. One
// line a message:
//
//	22 Nov 2026 03:36:08 GMT  #0669a1b2c3d4e  2195  <alice@example.org>
//
// the arrival (UTC), "#" and the queue id, the size in bytes, the sender in
// angle brackets ("<>" for the null sender) and a space, as qmail-qread
// prints it; then a word for each flag that applies, each after a space:
// "todo" (not yet picked up by the runner: qmail-qread would not list it),
// "held", "bouncing" (a recipient failed and the message is still queued).
//
// Then one line a recipient, TAB-separated, first qmail-qread's fields:
// a mark (empty while pending, "  done" once delivered, "  fail" once
// failed), "remote" and the address; then only the fields that apply:
// "attempts N", "next DATE" (a pending recipient's next try) and
// "error TEXT" (the last delivery error). Bytes outside printable ASCII
// print as '_'.
//
// With several reports each instance's messages follow a line
// "instance: NAME".
func List(w io.Writer, reps []Report) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var b []byte
	for _, r := range reps {
		if len(reps) > 1 {
			bw.WriteString("instance: " + safe(r.Label()) + "\n")
		}
		for _, m := range r.Messages {
			b = appendMessage(b[:0], m)
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// appendMessage appends m's lines in List's format.
func appendMessage(b []byte, m *queue.Message) []byte {
	b = append(b, date822(m.Arrival)...)
	b = append(b, "  #"...)
	b = append(b, m.ID.String()...)
	b = append(b, "  "...)
	b = strconv.AppendInt(b, m.Size, 10)
	b = append(b, "  <"...)
	b = append(b, safe(m.Sender)...)
	b = append(b, "> "...)
	if !seen(m) {
		b = append(b, " todo"...)
	}
	if m.Held {
		b = append(b, " held"...)
	}
	for _, rc := range m.Recipients {
		if rc.State == queue.Failed {
			b = append(b, " bouncing"...)
			break
		}
	}
	b = append(b, '\n')
	for _, rc := range m.Recipients {
		switch rc.State {
		case queue.Delivered:
			b = append(b, "  done"...)
		case queue.Failed:
			b = append(b, "  fail"...)
		}
		b = append(b, "\tremote\t"...)
		b = append(b, safe(rc.Address)...)
		if rc.Attempts > 0 {
			b = append(b, "\tattempts "...)
			b = strconv.AppendInt(b, int64(rc.Attempts), 10)
		}
		if rc.State == queue.Pending && !rc.NextTry.IsZero() {
			b = append(b, "\tnext "...)
			b = append(b, date822(rc.NextTry)...)
		}
		if rc.LastError() != "" {
			b = append(b, "\terror "...)
			b = append(b, safe(rc.LastError())...)
		}
		b = append(b, '\n')
	}
	return b
}
