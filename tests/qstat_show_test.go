package tests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestQstatShow follows one message by its id as an admin would with
// postcat -q: gw-queue takes it, gw-qstat list names it, gw-qstat show
// prints its envelope, recipients, header and body; an id the queue does
// not hold is a clear error, and a queue that cannot be read is another.
func TestQstatShow(t *testing.T) {
	qdir := filepath.Join(workDir(t), "main", "queue")
	initQueue(t, qdir)
	body := "Subject: the quarterly report\n" +
		"X-Trap: \x1b]0;owned\x07\n" +
		"\n" +
		"Numbers attached.\n"
	id, err := qstatInject(qdir, "alice@example.org", "bob@example.net", body)
	if err != nil {
		t.Fatal(err)
	}

	// $ gw-qstat show --queue DIR QID
	out, _ := qstatRun(t, nil, 0, "show", "--queue", qdir, id)
	for _, line := range []string{
		"*** envelope ***",
		"id: " + id,
		"state: incoming",
		"sender: <alice@example.org>",
		"recipient: <bob@example.net> pending",
		"*** header ***",
		"Subject: the quarterly report",
		"X-Trap: ^[]0;owned^G", // the escape sequence is shown, not obeyed
		"*** body ***",
		"Numbers attached.",
		"*** end ***",
	} {
		if !hasLine(out, line) {
			t.Errorf("show: no line %q in:\n%s", line, out)
		}
	}
	if !strings.Contains(out, "Received: (gw-queue ") {
		t.Errorf("show: the trace line gw-queue added is missing:\n%s", out)
	}

	// $ gw-qstat show --queue DIR --header QID: that part alone.
	out, _ = qstatRun(t, nil, 0, "show", "--header", "--queue", qdir, id)
	if hasLine(out, "*** envelope ***") || hasLine(out, "Numbers attached.") || !hasLine(out, "Subject: the quarterly report") {
		t.Errorf("show --header:\n%s", out)
	}

	// $ gw-qstat show --json: the content byte for byte.
	out, _ = qstatRun(t, nil, 0, "show", "--json", "--queue", qdir, id)
	var js struct {
		QueueID, Sender, Header, Body string
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("show --json: %v: %s", err, out)
	}
	if !strings.HasSuffix(js.Header+js.Body, body) || js.Sender != "alice@example.org" {
		t.Errorf("show --json: %+v", js)
	}

	// An id this queue does not hold: exit 100 and why.
	_, errs := qstatRun(t, nil, 100, "show", "--queue", qdir, "0000000000001")
	if !strings.Contains(errs, "gw-qstat: fatal: 0000000000001: no such message") {
		t.Errorf("unknown id: stderr %q", errs)
	}
	// Not an id at all: bad usage.
	_, errs = qstatRun(t, nil, 100, "show", "--queue", qdir, "../../etc/passwd")
	if !strings.Contains(errs, "is not a queue id") {
		t.Errorf("bad id: stderr %q", errs)
	}
	// A queue it cannot read: exit 111, nothing shown.
	out, _ = qstatRun(t, nil, 111, "show", "--queue", filepath.Join(qdir, "nowhere"), id)
	if out != "" {
		t.Errorf("show from a queue it cannot read printed:\n%s", out)
	}
}

func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
