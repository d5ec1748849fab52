// Package logline writes gw's log lines: one event a line, one write each,
// for multilog or svlogd to stamp.
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
	"strings"
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
func (l *Logger) Log(severity, event string, kv ...any) {
	line := Format(severity, event, kv...)
	l.mu.Lock()
	l.pending = append(l.pending, line...)
	tap := l.tap
	l.mu.Unlock()
	l.write()
	if tap != nil {
		tap(severity, event, kv)
	}
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
	var b strings.Builder
	b.WriteString(severity)
	b.WriteByte(' ')
	b.WriteString(event)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteByte(' ')
		b.WriteString(toString(kv[i]))
		b.WriteByte('=')
		b.WriteString(Quote(toString(kv[i+1])))
	}
	b.WriteByte('\n')
	return b.String()
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case error:
		return x.Error()
	// The kinds most lines carry, without fmt's reflection: a session
	// logs half a dozen lines of counts and flags.
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case uint16:
		return strconv.FormatUint(uint64(x), 10)
	default:
		return fmt.Sprint(v)
	}
}

// Quote returns v as a field value: bare when it is a plain token, else in
// double quotes with Go escapes, so a value never spans lines or fields.
func Quote(v string) string {
	if v == "" {
		return `""`
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\' {
			return strconv.QuoteToASCII(v)
		}
	}
	return v
}
