// Package logline writes gw's log lines: one event a line, for multilog or
// svlogd to stamp; a line is written whole, never split across writes.
//
// A line is the severity, the event name, then key=value fields in the order
// given:
//
//	info queued qid=0669a1b2c3d4e size=10240 rcpts=2
//
// Values are quoted when they hold a space, a quote, '=' or are empty, and
// every byte outside printable ASCII is escaped, because peers choose the
// bytes that end up in logs.
//
// An error is logged under the key err, in every program, so that one
// grep finds them all:
//
//	warning journal qid=0669a1b2c3d4e err="fsync: input/output error"
package logline

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// Logger writes log lines to one writer; it is safe for concurrent use.
// Lines logged while a write is under way are written together by the
// next write, in the order logged: a busy listener's sessions share write
// calls instead of making one each. Log returns only once its line has
// been written, by itself or by the caller before it, so no line waits
// in memory for a later event (or is lost when the program exits).
type Logger struct {
	mu      sync.Mutex // guards pending and tap
	pending []byte     // lines logged, not yet taken by a writer
	wmu     sync.Mutex // held by the one goroutine writing
	w       io.Writer
	tap     func(severity, event string, kv []any)
}

// Tap makes fn see every event the logger writes, after it is written:
// the metrics count the same events the log records, so that the two
// cannot disagree. Set it before the logger is in use.
func (l *Logger) Tap(fn func(severity, event string, kv []any)) {
	l.mu.Lock()
	l.tap = fn
	l.mu.Unlock()
}

// New returns a Logger writing to w.
func New(w io.Writer) *Logger { return &Logger{w: w} }

// Stderr is the logger every gw daemon uses by default: run scripts send
// stderr to the service's logger with exec 2>&1.
var Stderr = New(os.Stderr)

// Info logs an event of severity info; kv holds alternating keys and values.
func (l *Logger) Info(event string, kv ...any) { l.Log("info", event, kv...) }

// Warning logs a survivable problem.
func (l *Logger) Warning(event string, kv ...any) { l.Log("warning", event, kv...) }

// Alert logs a problem that needs the sysadmin.
func (l *Logger) Alert(event string, kv ...any) { l.Log("alert", event, kv...) }

// Log writes one line of the given severity.
func (l *Logger) Log(severity, event string, kv ...any) { l.LogWith(Fields{}, severity, event, kv...) }

// Fields are key=value pairs formatted once, for the lines that all
// carry them after the event name (a session's id).
type Fields struct {
	kv   []any
	text string
}

// With returns kv as Fields.
func With(kv ...any) Fields { return Fields{kv: kv, text: string(appendFields(nil, kv))} }

// LogWith writes one line of the given severity with f, then kv, after
// the event name. The line is formatted on the stack and copied into
// the pending writes, with no string made of it: a busy listener logs
// half a dozen lines a session, and each allocation is the collector's
// work later. The tap sees f's pairs before kv, as the line has them.
func (l *Logger) LogWith(f Fields, severity, event string, kv ...any) {
	var buf [512]byte
	line := appendLine(buf[:0], severity, event, f.text, kv)
	l.mu.Lock()
	l.pending = append(l.pending, line...)
	tap := l.tap
	l.mu.Unlock()
	l.write()
	if tap != nil {
		if len(f.kv) > 0 {
			kv = append(append(make([]any, 0, len(f.kv)+len(kv)), f.kv...), kv...)
		}
		tap(severity, event, kv)
	}
}

// Held gathers the lines one session logs while it works through what
// its client sent, and writes them in one write when the session is
// about to wait (Flush): a pipelined MAIL, RCPT and DATA cost one write
// for their lines, not one each. The session flushes before every wait
// (its client's next bytes, a reply the client must read, the injector,
// a milter, a DNS or callout answer) and at its end, so a line is never
// held while the session waits: it is no later in the log than the
// reply it goes with, and not lost when the program exits between two
// sessions' waits. A Held belongs to its session's goroutine: it is not
// for concurrent use.
type Held struct {
	l   *Logger
	f   Fields
	buf []byte  // the lines held, in the order logged
	bp  *[]byte // where buf came from (heldBuffers)
}

// Hold returns a Held whose lines carry f after the event name, as
// LogWith's do. It is a value, to be kept in the session's own state:
// a listener starts a session a message at times, and each allocation
// is the collector's work later.
func (l *Logger) Hold(f Fields) Held { return Held{l: l, f: f} }

// heldBuffers are the Helds' buffers, reused from one session to the
// next (Release).
var heldBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Log formats a line of the given severity and holds it until Flush.
// The tap sees the event at once: what it counts is in the log by the
// session's next wait.
func (h *Held) Log(severity, event string, kv ...any) {
	if h.bp == nil {
		h.bp = heldBuffers.Get().(*[]byte)
		h.buf = (*h.bp)[:0]
	}
	h.buf = appendLine(h.buf, severity, event, h.f.text, kv)
	h.l.mu.Lock()
	tap := h.l.tap
	h.l.mu.Unlock()
	if tap != nil {
		if len(h.f.kv) > 0 {
			kv = append(append(make([]any, 0, len(h.f.kv)+len(kv)), h.f.kv...), kv...)
		}
		tap(severity, event, kv)
	}
}

// Flush writes the lines held, in one write with whatever other
// sessions have pending, and returns once they are written. A nil Held
// holds nothing.
func (h *Held) Flush() {
	if h == nil || len(h.buf) == 0 {
		return
	}
	h.l.mu.Lock()
	h.l.pending = append(h.l.pending, h.buf...)
	h.l.mu.Unlock()
	h.buf = h.buf[:0]
	h.l.write()
}

// Release writes the lines held and gives the buffer back for another
// session; h may hold lines again after it.
func (h *Held) Release() {
	h.Flush()
	if h == nil || h.bp == nil {
		return
	}
	if cap(h.buf) <= 16<<10 { // one a session's lines grew huge is left to the collector
		*h.bp = h.buf[:0]
		heldBuffers.Put(h.bp)
	}
	h.buf, h.bp = nil, nil
}

// write writes what is pending, once the write under way (which may
// have taken this caller's line with it) is done.
func (l *Logger) write() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	l.w.Write(batch)
	l.mu.Lock()
	if l.pending == nil && cap(batch) <= 64<<10 {
		l.pending = batch[:0] // reused: no allocation a line
	}
	l.mu.Unlock()
}

// Format returns the line Log would write, newline included.
func Format(severity, event string, kv ...any) string {
	return string(appendLine(nil, severity, event, "", kv))
}

func appendLine(b []byte, severity, event, fields string, kv []any) []byte {
	b = append(b, severity...)
	b = append(b, ' ')
	b = append(b, event...)
	b = append(b, fields...)
	b = appendFields(b, kv)
	return append(b, '\n')
}

// appendFields appends " key=value" for each pair of kv.
func appendFields(b []byte, kv []any) []byte {
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, ' ')
		b = appendValue(b, kv[i], false)
		b = append(b, '=')
		b = appendValue(b, kv[i+1], true)
	}
	return b
}

// appendValue appends v as toString gives it, quoted as Quote says
// when quote is set (keys are gw's own words, values are not).
func appendValue(b []byte, v any, quote bool) []byte {
	switch x := v.(type) {
	// The kinds most lines carry, straight into the line: a session logs
	// half a dozen lines of names, counts and flags.
	case string:
		if quote {
			return appendQuoted(b, x)
		}
		return append(b, x...)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10)
	}
	if quote {
		return appendQuoted(b, toString(v))
	}
	return append(b, toString(v)...)
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case error:
		return x.Error()
	case bool, int, int64, uint64, uint32, uint16:
		return string(appendValue(nil, v, false))
	default:
		return fmt.Sprint(v)
	}
}

// appendQuoted appends Quote(v).
func appendQuoted(b []byte, v string) []byte {
	if plain(v) {
		return append(b, v...)
	}
	if v == "" {
		return append(b, `""`...)
	}
	return strconv.AppendQuoteToASCII(b, v)
}

// Quote returns v as a field value: bare when it is a plain token, else in
// double quotes with Go escapes, so a value never spans lines or fields.
func Quote(v string) string {
	if v == "" {
		return `""`
	}
	if !plain(v) {
		return strconv.QuoteToASCII(v)
	}
	return v
}

// plain reports whether v stands bare as a field value: not empty, and
// no space, quote, '=', backslash or byte outside printable ASCII.
func plain(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\' {
			return false
		}
	}
	return v != ""
}
