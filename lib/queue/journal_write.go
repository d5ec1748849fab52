package queue

import (
	"fmt"
	"io"
)

// writeOut hands the records appended so far to the kernel, without
// waiting for the disk, and returns how many records were appended by
// then. Call with w.syncMu held.
func (w *journalWriter) writeOut() (uint64, error) {
	w.mu.Lock()
	buf, upto := w.buf, w.queued
	w.buf = nil
	w.mu.Unlock()
	if len(buf) == 0 {
		return upto, nil
	}
	if _, err := w.f.Write(buf); err != nil {
		// Cut off what was written of the records and keep them for
		// the next sync: a torn record would hide every later one from
		// readers, and a dropped one the next sync would call durable.
		w.f.Truncate(w.size)
		w.f.Seek(w.size, io.SeekStart)
		w.mu.Lock()
		w.buf = append(buf, w.buf...)
		w.mu.Unlock()
		return 0, fmt.Errorf("journal write: %w", err)
	}
	w.size += int64(len(buf))
	return upto, nil
}

// write is writeOut for callers that do not hold the flush lock.
func (w *journalWriter) write() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.broken != nil {
		return w.broken
	}
	_, err := w.writeOut()
	return err
}

// Flush writes the journal records made so far into the journal file
// without flushing the file to disk: readers (gw-qstat) see them at once,
// and they survive a crash of the runner, but not of the system. For
// records whose loss costs only information; Sync is what makes an
// outcome durable.
func (r *Runner) Flush() error {
	r.mu.Lock()
	jw := r.jw
	r.mu.Unlock()
	return jw.write()
}
