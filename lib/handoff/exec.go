package handoff

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gw/lib/envelope"
	"gw/lib/inject"
	"gw/lib/qq"
)

// Exec runs a program with qmail-queue's interface for each message.
type Exec struct {
	Path string   // the program: $QMAILQUEUE or gw-queue
	Env  []string // its environment; nil means the listener's own
	// Plain writes qmail-queue's envelope alone, without gw's DSN items
	// (gw-queue.8, "Extended envelope"), which a program that is not
	// gw's own would refuse (91). See TakesDSN.
	Plain bool
}

// codeCrashed stands for an injector killed by a signal: qmail_close's
// "qq crashed", a temporary failure.
const codeCrashed = qq.InternalBug

// qidWait bounds the read of the queue id once the injector has exited:
// what it wrote is in the pipe already; only a descendant that kept the
// descriptor open without writing could make the read wait.
const qidWait = 100 * time.Millisecond

// Begin starts the program with a pipe on its fd 0 (the message), one on
// its fd 1 (the envelope) and one on fd 3 for the queue id (QIDFD). Its
// stderr is the listener's, for the log.
func (e *Exec) Begin(env envelope.Envelope) (Tx, error) { return e.BeginSession("", env) }

// BeginSession is Begin with the session sid told to the program in its
// environment (inject.SessionEnv), in place of any value the listener's
// own environment had; a sid that is not plain is not told.
func (e *Exec) BeginSession(sid string, env envelope.Envelope) (Tx, error) {
	var pipes [6]*os.File // message, envelope, queue id: read and write ends
	closeAll := func() {
		for _, f := range pipes {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := 0; i < len(pipes); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: %v", errStarted, err)
		}
		pipes[i], pipes[i+1] = r, w
	}
	msgR, msgW, envR, envW, qidR, qidW := pipes[0], pipes[1], pipes[2], pipes[3], pipes[4], pipes[5]
	cmd := exec.Command(e.Path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = msgR, envR, os.Stderr
	cmd.ExtraFiles = []*os.File{qidW} // fd 3
	cmd.Env = withSession(withQIDFD(e.Env), sid)
	err := cmd.Start()
	msgR.Close()
	envR.Close()
	qidW.Close()
	if err != nil {
		msgW.Close()
		envW.Close()
		qidR.Close()
		return nil, fmt.Errorf("%w: %s: %v", errStarted, e.Path, err)
	}
	return &execTx{cmd: cmd, msg: msgW, env: envW, qidR: qidR, w: bufio.NewWriterSize(msgW, 64<<10), envelope: env, plain: e.Plain}, nil
}

// withQIDFD returns environ (the listener's own when nil) with QIDFD
// naming fd 3, in place of any value it had: a wrapper's own descriptor
// is not its injector's.
func withQIDFD(environ []string) []string {
	if environ == nil {
		environ = os.Environ()
	}
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, inject.QIDFD+"=") {
			out = append(out, kv)
		}
	}
	return append(out, inject.QIDFD+"="+strconv.Itoa(inject.QIDFDNumber))
}

// withSession returns environ with inject.SessionEnv naming sid, or
// without it when sid is "" or not plain: a session id a wrapper inherited
// is not the one of the message at hand.
func withSession(environ []string, sid string) []string {
	out := environ[:0:0]
	for _, kv := range environ {
		if !strings.HasPrefix(kv, inject.SessionEnv+"=") {
			out = append(out, kv)
		}
	}
	if inject.PlainQID(sid) {
		out = append(out, inject.SessionEnv+"="+sid)
	}
	return out
}

type execTx struct {
	cmd      *exec.Cmd
	msg, env *os.File
	qidR     *os.File // the read end of the injector's fd 3
	w        *bufio.Writer
	envelope envelope.Envelope
	plain    bool  // without DSN items (Exec.Plain)
	werr     error // the first write error: the injector stopped reading
	qid      string
}

// QID returns the queue id the injector wrote on its fd 3, once Commit
// returned 0; "" when it wrote none, or not a queue id.
func (t *execTx) QID() string { return t.qid }

// readQID reads the line the injector wrote on its fd 3, if any.
func (t *execTx) readQID() string {
	defer t.qidR.Close()
	t.qidR.SetReadDeadline(time.Now().Add(qidWait))
	var buf [128]byte
	n, _ := io.ReadFull(t.qidR, buf[:])
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	if !inject.PlainQID(line) {
		return ""
	}
	return line
}

// SetEnvelope replaces the envelope given to Begin (handoff.Late).
func (t *execTx) SetEnvelope(env envelope.Envelope) { t.envelope = env }

func (t *execTx) Write(p []byte) (int, error) {
	if t.werr == nil {
		if _, err := t.w.Write(p); err != nil {
			t.werr = err
		}
	}
	return len(p), nil
}

// Commit closes the message, writes the envelope with its final NUL and
// waits. As qmail_close does, exit 0 after a write error on our side is
// not believed: the injector may have queued a message we did not finish.
func (t *execTx) Commit() (int, error) {
	if t.werr == nil {
		t.werr = t.w.Flush()
	}
	if t.plain && t.envelope.RequireTLS {
		// A plain qmail-queue cannot keep REQUIRETLS (RFC 8689), and
		// dropping it would let the message go on in the clear: nothing
		// is queued (the envelope ends without its final NUL).
		t.Abort()
		return qq.Refused, errors.New("REQUIRETLS message, and the injector is a plain qmail-queue that cannot keep REQUIRETLS")
	}
	t.msg.Close()
	if t.werr == nil {
		env := t.envelope
		if t.plain {
			env = env.WithoutDSN()
		}
		_, t.werr = t.env.Write(env.Wire())
	}
	t.env.Close()
	code, err := t.wait()
	if err != nil {
		t.qidR.Close()
		return code, err
	}
	if t.werr != nil {
		t.qidR.Close()
		if code == qq.OK {
			return qq.ReadError, fmt.Errorf("injector exited 0 after a write error: %w", t.werr)
		}
		return code, fmt.Errorf("injector exited %d: %s", code, qq.Reply(code))
	}
	if code != qq.OK {
		t.qidR.Close()
		return code, fmt.Errorf("injector exited %d: %s", code, qq.Reply(code))
	}
	t.qid = t.readQID()
	return code, nil
}

// Abort closes both pipes without the envelope's final NUL: the injector
// sees a truncated envelope and queues nothing.
func (t *execTx) Abort() {
	t.msg.Close()
	t.env.Close()
	t.wait()
	t.qidR.Close()
}

func (t *execTx) wait() (int, error) {
	err := t.cmd.Wait()
	if err == nil {
		return qq.OK, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return codeCrashed, fmt.Errorf("injector killed by %v", st.Signal())
		}
		return ee.ExitCode(), nil
	}
	return qq.InternalBug, fmt.Errorf("waiting for the injector: %w", err)
}
