package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"syscall"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"
	"gw/lib/qq"
)

// Wrapper is gw-scan as $QMAILQUEUE: qmail-queue's interface in front of
// gw-queue. It reads the message (fd 0) to its end into a spool file, then
// the envelope (fd 1), scans, and either exits with a qmail-queue code
// (31 reject, 71 tempfail, 0 when nothing is left to queue) or hands the
// possibly tagged message and the remaining recipients to gw-queue.
type Wrapper struct {
	Scanner    *Scanner
	TmpDir     string // spool files; "" is os.TempDir
	Quarantine *QuarantineDir
	// Plain gives the queue program qmail-queue's envelope alone,
	// without the DSN items: it is not gw's own (handoff.TakesDSN).
	Plain bool
}

// Delivery is what is left to queue after a scan: the message and its
// envelope (wire form, with the final NUL), each an unlinked file at
// offset 0, ready to become gw-queue's fds 0 and 1.
type Delivery struct {
	Message, Envelope *os.File
	Env               envelope.Envelope // what Envelope holds
}

// Close closes both files.
func (d *Delivery) Close() {
	d.Message.Close()
	d.Envelope.Close()
}

// spool copies r into a new unlinked file in dir and returns it and the
// bytes copied.
func spool(dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "gw-scan-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name())
	if r == nil {
		return f, 0, nil
	}
	n, err := io.Copy(f, r)
	if err != nil {
		f.Close()
		return nil, n, err
	}
	return f, n, nil
}

// spoolError tells a read error of the input from a write error of the
// spool: 54 or 53.
type readErr struct{ error }

type srcReader struct{ r io.Reader }

func (s srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

// receivedID finds gw-smtpd's (or qmail-smtpd's) id in the first
// Received line, to tie the verdict to the listener's log.
var receivedID = regexp.MustCompile(`^Received: [^\n]*(?:\n[ \t][^\n]*)*? id ([!-:<-~]{1,64});`)

func msgID(spool io.ReaderAt) string {
	b := make([]byte, 2048)
	n, _ := spool.ReadAt(b, 0)
	if m := receivedID.FindSubmatch(b[:n]); m != nil {
		return string(m[1])
	}
	return ""
}

// Wrap runs one message. With d nil, exit with code; otherwise hand d to
// gw-queue (ExecQueue) and let its exit code be the answer.
func (w *Wrapper) Wrap(ctx context.Context, msg, env io.Reader) (code int, d *Delivery) {
	log := w.Scanner.Log
	f, size, err := spool(w.TmpDir, srcReader{msg})
	if err != nil {
		var re readErr
		if errors.As(err, &re) {
			log.Warning("refused", "code", qq.ReadError, "err", err)
			return qq.ReadError, nil
		}
		log.Warning("refused", "code", qq.WriteError, "err", err)
		return qq.WriteError, nil
	}
	keep := false // f becomes the Delivery of a trusted message
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	e, err := envelope.Read(bufio.NewReader(env))
	if err != nil {
		var ee *envelope.Error
		code := qq.ReadError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		log.Warning("refused", "code", code, "err", err)
		return code, nil
	}
	id := NewID()
	rep := w.Scanner.Scan(ctx, f, size, id, w.meta(f, e))
	plan := w.Scanner.Plan(rep, e)
	acts, deliver, held := plan.Acts, plan.Deliver, plan.Held
	mid := msgID(f)
	switch plan.Refuse {
	case Reject:
		w.Scanner.LogVerdict(rep, mid, e.Recipients, acts, "code", qq.Refused)
		return qq.Refused, nil
	case Tempfail:
		// qmail-queue's codes carry no text: the reason (rspamd's
		// greylist) is in the log line.
		w.Scanner.LogVerdict(rep, mid, e.Recipients, acts, "code", qq.TemporaryRefusal, "reason", plan.Text)
		return qq.TemporaryRefusal, nil
	}
	if len(held.Recipients) > 0 {
		if err := w.hold(f, size, rep, held); err != nil {
			w.Scanner.LogVerdict(rep, mid, e.Recipients, acts, "code", qq.WriteError, "err", err)
			return qq.WriteError, nil
		}
	}
	if len(deliver.Recipients) == 0 {
		w.Scanner.LogVerdict(rep, mid, e.Recipients, acts, "code", qq.OK)
		return qq.OK, nil
	}
	if rep.Trusted {
		// Byte for byte: the token covers what the first scanner wrote.
		ef, err := w.envFile(deliver)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			code := envFileCode(err)
			log.Warning("refused", "scan", id, "code", code, "err", err)
			return code, nil
		}
		w.Scanner.LogVerdict(rep, mid, e.Recipients, acts)
		keep = true
		return qq.OK, &Delivery{Message: f, Envelope: ef, Env: deliver}
	}
	out, err := w.rewrite(f, size, rep, plan.Tag)
	if err != nil {
		log.Warning("refused", "scan", id, "code", qq.WriteError, "err", err)
		return qq.WriteError, nil
	}
	ef, err := w.envFile(deliver)
	if err != nil {
		out.Close()
		code := envFileCode(err)
		log.Warning("refused", "scan", id, "code", code, "err", err)
		return code, nil
	}
	w.Scanner.LogVerdict(rep, mid, e.Recipients, acts)
	return qq.OK, &Delivery{Message: out, Envelope: ef, Env: deliver}
}

// rewrite writes the message as act delivers it into a new spool file:
// the scan's headers (and the trust token) on top, forged ones stripped.
func (w *Wrapper) rewrite(f *os.File, size int64, rep *Report, act Action) (*os.File, error) {
	add, err := w.additions(f, size, rep, act)
	if err != nil {
		return nil, err
	}
	out, _, err := spool(w.TmpDir, nil)
	if err != nil {
		return nil, err
	}
	drop := w.Scanner.Drops(rep, act)
	if err := RewriteDrop(out, io.NewSectionReader(f, 0, size), add, drop, size); err != nil {
		out.Close()
		return nil, err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// additions is the header lines the scan puts on top of the message
// for action act: the scan's fields, and the trust token when the
// message was scanned in full.
func (w *Wrapper) additions(f io.ReaderAt, size int64, rep *Report, act Action) ([]string, error) {
	add := w.Scanner.Headers(rep, act)
	if t := w.Scanner.Trust; t != nil && !Forgeable(rep) {
		h, err := t.Header(io.NewSectionReader(f, 0, size))
		if err != nil {
			return nil, err
		}
		add = append(add, h)
	}
	return add, nil
}

// hold puts the message, tagged as quarantined, in the quarantine for the
// recipients of held, under the scan's id.
func (w *Wrapper) hold(f *os.File, size int64, rep *Report, held envelope.Envelope) error {
	out, err := w.rewrite(f, size, rep, Quarantine)
	if err != nil {
		return err
	}
	defer out.Close()
	return w.Quarantine.Put(rep.ID, reason(rep), held, out)
}

// Forgeable reports whether a message must not get a trust token: it was
// not fully scanned.
func Forgeable(rep *Report) bool {
	return failed(rep.ClamdErr) || failed(rep.SpamErr) || failed(rep.RspamdErr) || rep.MIMEErr != nil ||
		rep.ClamdErr == ErrTooBig || rep.SpamErr == ErrTooBig || rep.RspamdErr == ErrTooBig
}

// envFileCode is the exit code for envFile's error: permanent for
// errPlainRequireTLS, else a write error, temporary.
func envFileCode(err error) int {
	if errors.Is(err, errPlainRequireTLS) {
		return qq.Refused
	}
	return qq.WriteError
}

// errPlainRequireTLS: a REQUIRETLS message (RFC 8689) cannot go to a
// plain qmail-queue, which has no way to keep the flag; dropping it would
// let the message go on in the clear, so it is refused for good.
var errPlainRequireTLS = errors.New("REQUIRETLS message, and the next queue is a plain qmail-queue that cannot keep REQUIRETLS")

func (w *Wrapper) envFile(e envelope.Envelope) (*os.File, error) {
	if w.Plain {
		if e.RequireTLS {
			return nil, errPlainRequireTLS
		}
		e = e.WithoutDSN()
	}
	f, _, err := spool(w.TmpDir, nil)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(e.Wire()); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// reason is the text a quarantine file and its listing give.
func reason(rep *Report) string {
	if len(rep.Classes) == 0 {
		return "policy"
	}
	switch rep.Classes[0] {
	case ClassVirus:
		return "virus " + virusName(rep)
	case ClassBanned, ClassBomb, ClassBadMIME:
		return rep.Classes[0] + " " + rep.MIME.String()
	case ClassSpam, ClassSpamKill:
		if rep.Spam != nil {
			return fmt.Sprintf("%s score=%.1f", rep.Classes[0], rep.Spam.Score)
		}
		if rep.Rspamd != nil {
			return fmt.Sprintf("%s rspamd %s score=%.1f", rep.Classes[0], sanitize(rep.Rspamd.Action), rep.Rspamd.Score)
		}
	}
	return rep.Classes[0]
}

// ExecQueue replaces the process with the queue program, its fd 0 the
// message and its fd 1 the envelope, as qmail-queue wrappers end. It
// returns only on failure.
func ExecQueue(path string, d *Delivery, environ []string) error {
	if err := unix.Dup2(int(d.Message.Fd()), 0); err != nil {
		return fmt.Errorf("dup2 message: %w", err)
	}
	if err := unix.Dup2(int(d.Envelope.Fd()), 1); err != nil {
		return fmt.Errorf("dup2 envelope: %w", err)
	}
	if err := syscall.Exec(path, []string{path}, environ); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
