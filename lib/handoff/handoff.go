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

// SessionInjector is an Injector that can tell its injector the listener
// session a message comes from, so that the injector's queued line
// carries the sid beside the qid: gw-queued by its socket (protocol
// version 3), gw-queue by the environment (inject.SessionEnv).
type SessionInjector interface {
	BeginSession(sid string, env envelope.Envelope) (Tx, error)
}

// BeginSession begins a message from the session sid: with the sid when
// inj can pass it on, as Begin otherwise (an injector that is not gw's).
func BeginSession(inj Injector, sid string, env envelope.Envelope) (Tx, error) {
	if s, ok := inj.(SessionInjector); ok {
		return s.BeginSession(sid, env)
	}
	return inj.Begin(env)
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

// Identified is a Tx that can tell the queue id its injector committed the
// message under, once Commit returned 0: gw-queued says it on its socket
// (protocol version 2), gw-queue on the descriptor GW_QIDFD names. A
// listener puts it in its reply (250 ok <qid>, K…) and its log, so that
// one key links the client's transcript to the queue's log.
type Identified interface {
	QID() string
}

// QID returns the queue id of a committed tx, or "" when its injector did
// not say (a qmail-queue that is not gw's, an older gw-queued).
func QID(tx Tx) string {
	if i, ok := tx.(Identified); ok {
		return i.QID()
	}
	return ""
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

// Chooser is a listener's choice of injector and of the Space it checks
// at MAIL, made once in its main from the process's environment (Select,
// SpaceFor), and the ones a client's tcprules rule names instead when it
// sets QMAILQUEUE, GW_QUEUED or GW_QUEUE (the rule's value first, the
// process's for a variable it leaves unset), as qmail-smtpd under
// tcpserver takes a rule's QMAILQUEUE. Nothing below main reads the
// environment for them.
type Chooser struct {
	qmailqueue, queued, queue string // the process's values, read once
	def                       Injector
	space                     Space
}

// NewChooser reads QMAILQUEUE, GW_QUEUED and GW_QUEUE once, through
// getenv.
func NewChooser(getenv func(string) string) *Chooser {
	c := &Chooser{qmailqueue: getenv("QMAILQUEUE"), queued: getenv("GW_QUEUED"), queue: getenv("GW_QUEUE")}
	c.def = Select(c.process)
	c.space = SpaceFor(c.process)
	return c
}

func (c *Chooser) process(k string) string {
	switch k {
	case "QMAILQUEUE":
		return c.qmailqueue
	case "GW_QUEUED":
		return c.queued
	case "GW_QUEUE":
		return c.queue
	}
	return ""
}

// merged looks a variable up in the rule's assignments, then in the
// process's values read at start.
func (c *Chooser) merged(rule func(string) (string, bool)) func(string) string {
	return func(k string) string {
		if v, ok := rule(k); ok {
			return v
		}
		return c.process(k)
	}
}

// Default returns the injector chosen from the process's environment:
// the one for every client when no rule names another, and the only one
// under tcpserver, where the rule's variables are the process's.
func (c *Chooser) Default() Injector { return c.def }

// For returns the injector of a client whose rule set the variables
// rule reports (nil: none).
func (c *Chooser) For(rule func(string) (string, bool)) Injector {
	if rule == nil {
		return c.def
	}
	_, q := rule("QMAILQUEUE")
	_, s := rule("GW_QUEUED")
	if !q && !s {
		return c.def
	}
	return Select(c.merged(rule))
}

// DefaultSpace returns the Space of the queue the process's environment
// names (SpaceFor).
func (c *Chooser) DefaultSpace() Space { return c.space }

// SpaceFor returns the Space of a client whose rule set the variables
// rule reports (nil: none).
func (c *Chooser) SpaceFor(rule func(string) (string, bool)) Space {
	if rule == nil {
		return c.space
	}
	_, s := rule("GW_QUEUED")
	_, q := rule("GW_QUEUE")
	if !s && !q {
		return c.space
	}
	return SpaceFor(c.merged(rule))
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
