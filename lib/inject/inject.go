// Package inject is the injector side of qmail-queue's interface: it reads
// a message, then its envelope, into a queue, and answers with the exit
// code qmail-queue would give. gw-queue runs it once a process on fds 0
// and 1; gw-queued runs it for every message a listener sends over its
// unix socket (Server).
package inject

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
	"gw/lib/qq"
	"gw/lib/queue"
)

// Trace returns the line an injector puts on top of every message, as
// qmail-queue does: who handed it the message, and when (UTC).
//
//	Received: (gw-queue 4711 invoked by uid 1001); 22 Nov 2026 03:36:08 -0000
func Trace(program string, pid, uid uint32, t time.Time) string {
	return fmt.Sprintf("Received: (%s %d invoked by uid %d); %s\n", program, pid, uid, Date822(t))
}

// Date822 formats t as qmail's date822fmt does: day without a leading
// zero, UTC, "-0000".
func Date822(t time.Time) string {
	return t.UTC().Format("2 Jan 2006 15:04:05 -0000")
}

// readError is a failure to read the message or the envelope (exit 54).
type readError struct{ err error }

func (e *readError) Error() string { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// Code returns qmail-queue's exit code for an injection error.
func Code(err error) int {
	if err == nil {
		return qq.OK
	}
	var envErr *envelope.Error
	if errors.As(err, &envErr) {
		return envErr.Code
	}
	var rerr *readError
	if errors.As(err, &rerr) {
		return qq.ReadError
	}
	var ierr *queue.InjectError
	if errors.As(err, &ierr) {
		if ierr.DiskFull() {
			return qq.WriteError
		}
		if ierr.Step == queue.StepCreate {
			return qq.QueueTrouble
		}
		return qq.WriteError
	}
	if errors.Is(err, unix.ENOMEM) {
		return qq.OutOfMemory
	}
	return qq.InternalBug
}

// Stream injects one message the qmail-queue way: the whole of msg, then
// the envelope from env, into a segment of its own. It returns the queue
// ID once the message is durable. trace is written before the message.
func Stream(q *queue.Queue, uid, pid uint32, trace string, msg, env io.Reader) (queue.ID, error) {
	w, err := q.NewMessage(uid, pid)
	if err != nil {
		return 0, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Abort()
		}
	}()
	if _, err := io.WriteString(w, trace); err != nil {
		return 0, err
	}
	if err := copyBody(w, msg); err != nil {
		return 0, err
	}
	e, err := envelope.Read(bufio.NewReaderSize(env, 4096))
	if err != nil {
		return 0, wrapRead(err)
	}
	if err := w.Commit(e); err != nil {
		return 0, err
	}
	ok = true
	return w.ID(), nil
}

// copyBody copies msg into w, telling a read failure (54) from a write
// failure (53).
//
// Each write is a whole 64 KiB block, however the pipe delivered the
// bytes: the writer then encodes full chunks in place, and the same
// message always makes the same writes to its segment (the kill tests
// count them).
func copyBody(w io.Writer, msg io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := io.ReadFull(msg, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return &readError{rerr}
		}
	}
}

// wrapRead marks a plain error from envelope.Read as a read error; an
// *envelope.Error already carries its code.
func wrapRead(err error) error {
	var envErr *envelope.Error
	if errors.As(err, &envErr) {
		return err
	}
	return &readError{err}
}
