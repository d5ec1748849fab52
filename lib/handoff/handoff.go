// Package handoff gives a listener's message to the queue injector and
// turns the injector's qmail-queue exit code into the listener's answer.
//
// There are two injectors behind one interface. Exec runs a program with
// qmail-queue's interface ($QMAILQUEUE, or gw-queue): the message on its
// fd 0, then the envelope on its fd 1, and its exit code. Pool sends the
// message over gw-queued's unix socket on a kept-open connection, which
// saves a process a message. Both stream: the message is never held whole
// in memory, it goes to the injector while the client sends it.
//
// A transaction is Begin, Write…, then exactly one of Commit or Abort.
// Abort is qmail_fail's abort: the injector is never told the envelope is
// complete (no final NUL, or a dropped socket), so it queues nothing.
package handoff

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"gw/lib/envelope"
)

// Injector starts message transactions.
type Injector interface {
	// Begin starts a transaction for env. An error means no injector could
	// be started: answer with a temporary failure.
	Begin(env envelope.Envelope) (Tx, error)
}

// Tx is one message on its way to the injector.
type Tx interface {
	// Write passes message bytes (stored form: LF line ends). After the
	// injector stopped reading, Write keeps returning nil so the caller can
	// read the client's message to its end; Commit then reports the code.
	io.Writer
	// Commit completes the envelope and waits for the injector's verdict:
	// qmail-queue's exit code, 0 only once the message is durable. err
	// carries the detail for the log; the code is what to answer.
	Commit() (code int, err error)
	// Abort abandons the message; the injector queues nothing.
	Abort()
}

// Late is a Tx whose envelope may be given after the message, the order
// QMTP sends them in: begun with a zero envelope, it takes the one given to
// SetEnvelope before Commit. Both injectors are Late, since both write the
// envelope only once the message is complete (qmail-queue reads fd 1 after
// fd 0's end).
type Late interface {
	SetEnvelope(env envelope.Envelope)
}

// Select returns the injector a listener uses, given its environment:
// QMAILQUEUE when set (a wrapper chain such as gw-scan), else gw-queued's
// socket when GW_QUEUED names it, else gw-queue found next to the running
// program or on PATH.
func Select(getenv func(string) string) Injector {
	if p := getenv("QMAILQUEUE"); p != "" {
		return &Exec{Path: p, Plain: !TakesDSN(p)}
	}
	if sock := getenv("GW_QUEUED"); sock != "" {
		return PoolFor(sock)
	}
	return &Exec{Path: DefaultQueue()}
}

// TakesDSN reports whether the injector program at path is gw's own,
// gw-queue or gw-scan (by its name), and so takes the envelope's DSN
// items. Any other program, qmail-queue's or a filter in front of it,
// gets qmail-queue's envelope alone: the DSN request is lost there, the
// message is not (a wrapper script that ends in gw-queue is such a
// program too).
func TakesDSN(path string) bool {
	base := filepath.Base(path)
	return base == "gw-queue" || base == "gw-scan"
}

// DefaultQueue returns the path of gw-queue: beside the running program if
// it is there, else the name alone for PATH to resolve.
func DefaultQueue() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "gw-queue")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath("gw-queue"); err == nil {
		return p
	}
	return "gw-queue"
}

// errStarted reports a failure to start an injector.
var errStarted = errors.New("injector not started")
