package sessiontest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"gw/lib/envelope"
	"gw/lib/logline"
	"gw/lib/qq"
	"gw/lib/scan"
)

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// commit runs one message through inj and returns the code and what
// was told.
func commit(t *testing.T, inj *Injector, env envelope.Envelope, msg string) (int, string) {
	t.Helper()
	var told []string
	inj.Explain = func(l string) { told = append(told, l) }
	tx, err := inj.Begin(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tx, msg)
	code, _ := tx.Commit()
	return code, strings.Join(told, "\n")
}

// TestInjector: the stand-in injector queues nothing and says so; it
// checks the envelope as gw-queue would; it gives the scan's refusal
// code, gw-scan's own; a chain that cannot start defers every message.
func TestInjector(t *testing.T) {
	env := envelope.Envelope{Sender: "a@example.org", Recipients: []string{"u@example.com", "v@example.com"}}
	msg := "Subject: hi\n\nhello\n"

	code, told := commit(t, &Injector{}, env, msg)
	if code != qq.OK || !strings.Contains(told, "scan: none") ||
		!strings.Contains(told, "queue: not queued (session test): 19 bytes from <a@example.org> to <u@example.com>, <v@example.com>") {
		t.Errorf("plain: %d\n%s", code, told)
	}

	bad := envelope.Envelope{Sender: "a@example.org", Recipients: []string{"u\n@example.com"}}
	if code, told := commit(t, &Injector{}, bad, msg); code == qq.OK || !strings.Contains(told, "gw-queue would refuse the envelope") {
		t.Errorf("an envelope gw-queue refuses: %d\n%s", code, told)
	}

	if code, _ := commit(t, &Injector{Broken: errors.New("control/scanpolicy: bad line")}, env, msg); code != qq.ConfigError {
		t.Errorf("a broken chain: %d, want %d", code, qq.ConfigError)
	}

	var log bytes.Buffer
	s := &scan.Scanner{MIME: &scan.MIMERules{EICAR: true, MaxDepth: 20, MaxParts: 100}, Policy: &scan.Policy{}, Log: logline.New(&log)}
	w := &scan.Wrapper{Scanner: s}
	code, told = commit(t, &Injector{Scan: w}, env, "Subject: test\n\n"+eicar+"\n")
	if code != qq.Refused || !strings.Contains(told, "scan: reject: virus ") || strings.Contains(told, "queue:") {
		t.Errorf("EICAR: %d\n%s", code, told)
	}
	if !strings.Contains(log.String(), "info verdict scan=") {
		t.Errorf("no verdict line:\n%s", log.String())
	}
	code, told = commit(t, &Injector{Scan: w}, env, msg)
	if code != qq.OK || !strings.Contains(told, "scan: clean") || !strings.Contains(told, "queue: not queued") {
		t.Errorf("clean: %d\n%s", code, told)
	}
}
