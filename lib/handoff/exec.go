package handoff

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"gw/lib/envelope"
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

// Begin starts the program with a pipe on its fd 0 (the message) and one
// on its fd 1 (the envelope). Its stderr is the listener's, for the log.
func (e *Exec) Begin(env envelope.Envelope) (Tx, error) {
	msgR, msgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errStarted, err)
	}
	envR, envW, err := os.Pipe()
	if err != nil {
		msgR.Close()
		msgW.Close()
		return nil, fmt.Errorf("%w: %v", errStarted, err)
	}
	cmd := exec.Command(e.Path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = msgR, envR, os.Stderr
	cmd.Env = e.Env
	err = cmd.Start()
	msgR.Close()
	envR.Close()
	if err != nil {
		msgW.Close()
		envW.Close()
		return nil, fmt.Errorf("%w: %s: %v", errStarted, e.Path, err)
	}
	return &execTx{cmd: cmd, msg: msgW, env: envW, w: bufio.NewWriterSize(msgW, 64<<10), envelope: env, plain: e.Plain}, nil
}

type execTx struct {
	cmd      *exec.Cmd
	msg, env *os.File
	w        *bufio.Writer
	envelope envelope.Envelope
	plain    bool  // without DSN items (Exec.Plain)
	werr     error // the first write error: the injector stopped reading
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
		return code, err
	}
	if t.werr != nil {
		if code == qq.OK {
			return qq.ReadError, fmt.Errorf("injector exited 0 after a write error: %w", t.werr)
		}
		return code, fmt.Errorf("injector exited %d: %s", code, qq.Reply(code))
	}
	if code != qq.OK {
		return code, fmt.Errorf("injector exited %d: %s", code, qq.Reply(code))
	}
	return code, nil
}

// Abort closes both pipes without the envelope's final NUL: the injector
// sees a truncated envelope and queues nothing.
func (t *execTx) Abort() {
	t.msg.Close()
	t.env.Close()
	t.wait()
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
