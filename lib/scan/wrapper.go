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

// Delivery is what is left to queue after a scan: the envelope, and the
// message as it goes on, the spool with the scan's header on top.
// WriteMessage writes it straight from the spool to gw-queued's socket;
// Files writes it and the envelope into the two files gw-queue takes as
// fds 0 and 1. A wrapper runs once a message: the copy and the two files
// made for a gw-queue that is not run were a third of its own work.
type Delivery struct {
	Env      envelope.Envelope // who it goes to
	spool    *os.File
	size     int64
	add      []string       // header lines put on top
	drop     map[string]int // fields left out (RewriteDrop)
	verbatim bool           // byte for byte: a trusted message's token covers it
	plain    bool           // the envelope file without DSN's parameters
	tmpDir   string
}

// Close closes the spool.
func (d *Delivery) Close() { d.spool.Close() }

// WriteMessage writes the message as it is delivered to dst.
func (d *Delivery) WriteMessage(dst io.Writer) error {
	if d.verbatim {
		_, err := io.Copy(dst, io.NewSectionReader(d.spool, 0, d.size))
		return err
	}
	return RewriteDrop(dst, d.spool, d.add, d.drop, d.size)
}

// Files returns the message and its envelope (wire form, with the final
// NUL), each an unlinked file at offset 0, ready to become gw-queue's fds
// 0 and 1.
func (d *Delivery) Files() (msg, env *os.File, err error) {
	if d.verbatim {
		msg = d.spool
		if _, err := msg.Seek(0, io.SeekStart); err != nil {
			return nil, nil, err
		}
	} else {
		if msg, _, err = spool(d.tmpDir, nil); err != nil {
			return nil, nil, err
		}
		err = d.WriteMessage(msg)
		if err == nil {
			_, err = msg.Seek(0, io.SeekStart)
		}
		if err != nil {
			msg.Close()
			return nil, nil, err
		}
	}
	e := d.Env
	if d.plain {
		e = e.WithoutDSN()
	}
	if env, _, err = spool(d.tmpDir, nil); err == nil {
		_, err = env.Write(e.Wire())
		if err == nil {
			_, err = env.Seek(0, io.SeekStart)
		}
		if err != nil {
			env.Close()
		}
	}
	if err != nil {
		if msg != d.spool {
			msg.Close()
		}
		return nil, nil, err
	}
	return msg, env, nil
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
	keep := false // f goes on in the Delivery
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
	if w.Plain && deliver.RequireTLS {
		log.Warning("refused", "scan", id, "code", qq.Refused, "err", errPlainRequireTLS)
		return qq.Refused, nil
	}
	d = &Delivery{Env: deliver, spool: f, size: size, plain: w.Plain, tmpDir: w.TmpDir}
	// Byte for byte, a trusted message: the token covers what the first
	// scanner wrote.
	d.verbatim = rep.Trusted
	if !rep.Trusted {
		if d.add, err = w.additions(f, size, rep, plan.Tag); err != nil {
			log.Warning("refused", "scan", id, "code", qq.WriteError, "err", err)
			return qq.WriteError, nil
		}
		d.drop = w.Scanner.Drops(rep, plan.Tag)
	}
	w.Scanner.LogVerdict(rep, mid, e.Recipients, acts)
	keep = true
	return qq.OK, d
}

// rewrite writes the message as act delivers it into a new spool file:
// the scan's headers (and the trust token) on top, forged ones stripped.
func (w *Wrapper) rewrite(f io.ReaderAt, size int64, rep *Report, act Action) (*os.File, error) {
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
func (w *Wrapper) hold(f io.ReaderAt, size int64, rep *Report, held envelope.Envelope) error {
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

// errPlainRequireTLS: a REQUIRETLS message (RFC 8689) cannot go to a
// plain qmail-queue, which has no way to keep the flag; dropping it would
// let the message go on in the clear, so it is refused for good.
var errPlainRequireTLS = errors.New("REQUIRETLS message, and the next queue is a plain qmail-queue that cannot keep REQUIRETLS")

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
func ExecQueue(path string, msg, env *os.File, environ []string) error {
	if err := unix.Dup2(int(msg.Fd()), 0); err != nil {
		return fmt.Errorf("dup2 message: %w", err)
	}
	if err := unix.Dup2(int(env.Fd()), 1); err != nil {
		return fmt.Errorf("dup2 envelope: %w", err)
	}
	if err := syscall.Exec(path, []string{path}, environ); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
