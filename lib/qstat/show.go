package qstat

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gw/lib/logline"
	"gw/lib/logtrace"
	"gw/lib/queue"
)

// History is each recipient's delivery attempts by address, from the
// instance's logs (logtrace.Attempts): the journal keeps the latest
// outcome only. nil when no log was read.
type History map[string][]logtrace.Attempt

// ErrNoMessage is returned by Find for an id no selected queue holds: it
// was never queued there, or it has left (delivered, bounced, removed).
var ErrNoMessage = errors.New("no such message")

// Find returns the report and message with id. The reports are searched in
// order; a report that could not be read is skipped, its error is the
// caller's to report.
func Find(reps []Report, id queue.ID) (Report, *queue.Message, error) {
	for _, r := range reps {
		for _, m := range r.Messages {
			if m.ID == id {
				return r, m, nil
			}
		}
	}
	return Report{}, nil, fmt.Errorf("%s: %w in the queues read (never queued, or delivered, bounced or removed since)", id, ErrNoMessage)
}

// OpenContent opens the stored content of m, the trace line gw-queue
// added included, from the queue in dir. The reader ends with
// queue.ErrCorrupt rather than io.EOF if the record fails its checksum.
func OpenContent(dir string, m *queue.Message) (io.ReadCloser, error) {
	q, err := queue.OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	// The body reader holds its own descriptor; the queue is not needed
	// once it is open.
	defer q.Close()
	return q.OpenBody(m)
}

// Parts chooses what Show prints; the zero value prints everything.
type Parts struct {
	Envelope, Header, Body bool
}

func (p Parts) all() bool { return !p.Envelope && !p.Header && !p.Body }

// Show writes one message as postcat -q shows one, in gw's words: the
// envelope and each recipient's state, then the header and the body of the
// stored content, each part after a line "*** NAME ***" so that a reader
// (or sed) finds it:
//
//	*** envelope ***
//	queue: /var/gw/main/queue
//	instance: main
//	id: 0669a1b2c3d4e
//	state: deferred
//	arrival: 22 Nov 2026 03:36:08 GMT
//	size: 2195
//	sender: <alice@example.org>
//	injected by: uid 107 pid 4242
//	recipient: <bob@example.net> pending attempts 3 next 22 Nov 2026 04:06:08 GMT
//	recipient error: 421 4.7.0 try later
//	recipient outcome: status=4.7.0 reply_code=421 stage="RCPT TO" remote_host=mx.example.net remote_addr=192.0.2.25:25
//	recipient attempt: 22 Nov 2026 03:36:09 GMT deferred mx.example.net: 421 4.7.0 try later
//	*** header ***
//	Received: ...
//	*** body ***
//	...
//	*** end ***
//
// Envelope values are printed with bytes outside printable ASCII as '_'
// (they come from peers). Content is printed as stored except for control
// characters other than TAB, CR and LF, shown as '^' and a letter as cat
// -v does: a message from the Internet must not steer the terminal.
// Each attempt hist holds for a recipient follows its lines, oldest first.
func Show(w io.Writer, r Report, m *queue.Message, hist History, content io.Reader, parts Parts) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if parts.all() || parts.Envelope {
		writeEnvelope(bw, r, m, hist)
	}
	if parts.all() || parts.Header || parts.Body {
		header, body, err := splitContent(content)
		if parts.all() || parts.Header {
			bw.WriteString("*** header ***\n")
			bw.Write(visible(header))
		}
		if parts.all() || parts.Body {
			bw.WriteString("*** body ***\n")
			if body != nil {
				if _, cerr := io.Copy(visibleWriter{bw}, body); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			bw.Flush()
			return err
		}
	}
	bw.WriteString("*** end ***\n")
	return bw.Flush()
}

func writeEnvelope(bw *bufio.Writer, r Report, m *queue.Message, hist History) {
	bw.WriteString("*** envelope ***\n")
	bw.WriteString("queue: " + safe(r.Dir) + "\n")
	if r.Instance != "" {
		bw.WriteString("instance: " + safe(r.Instance) + "\n")
	}
	bw.WriteString("id: " + m.ID.String() + "\n")
	bw.WriteString("state: " + StateOf(m).String() + "\n")
	bw.WriteString("arrival: " + date822(m.Arrival) + "\n")
	bw.WriteString("size: " + strconv.FormatInt(m.Size, 10) + "\n")
	bw.WriteString("sender: <" + safe(m.Sender) + ">\n")
	fmt.Fprintf(bw, "injected by: uid %d pid %d\n", m.UID, m.PID)
	for _, rc := range m.Recipients {
		line := "recipient: <" + safe(rc.Address) + "> " + rc.State.String()
		if rc.Attempts > 0 {
			line += " attempts " + strconv.Itoa(rc.Attempts)
		}
		if rc.State == queue.Pending && !rc.NextTry.IsZero() {
			line += " next " + date822(rc.NextTry)
		}
		if rc.DotSent {
			line += " possible-duplicate"
		}
		bw.WriteString(line + "\n")
		if e := rc.LastError(); e != "" {
			bw.WriteString("recipient error: " + safe(e) + "\n")
		}
		if o := outcome(rc.Outcome); o != "" {
			bw.WriteString("recipient outcome:" + o + "\n")
		}
		for _, a := range hist[rc.Address] {
			line := "recipient attempt: " + date822(a.Time) + " " + safe(a.Result)
			// a failure's text names its host already; a reply does not
			if a.Host != "" && !strings.HasPrefix(a.Reply, a.Host) {
				line += " " + safe(a.Host) + ":"
			}
			bw.WriteString(line + " " + safe(a.Reply) + "\n")
		}
	}
}

// maxHeader bounds the header Show holds in memory; a longer one is shown
// up to the bound and the rest as body, rather than read whole.
const maxHeader = 1 << 20

// splitContent reads the header of content, up to and including the empty
// line that ends it, and returns it with a reader of the rest.
func splitContent(content io.Reader) (header []byte, body io.Reader, err error) {
	br := bufio.NewReaderSize(content, 64<<10)
	for len(header) < maxHeader {
		line, err := br.ReadSlice('\n')
		header = append(header, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return header, nil, nil
		}
		if err != nil {
			return header, nil, err
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			break
		}
	}
	return header, br, nil
}

// visible returns b with control characters other than TAB, CR and LF
// shown as cat -v shows them.
func visible(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == '\t' || c == '\r' || c == '\n':
			out = append(out, c)
		case c < 32:
			out = append(out, '^', c+'@')
		case c == 127:
			out = append(out, '^', '?')
		default:
			out = append(out, c)
		}
	}
	return out
}

type visibleWriter struct{ w io.Writer }

func (v visibleWriter) Write(p []byte) (int, error) {
	if _, err := v.w.Write(visible(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// jsonAttempt is one delivery attempt in show --json's "history".
type jsonAttempt struct {
	Time   int64  `json:"time"`   // seconds since the epoch
	Result string `json:"result"` // delivered, deferred, failed
	Host   string `json:"host,omitempty"`
	Reply  string `json:"reply"`
}

// jsonShown is show --json: the listing's object with the content added.
type jsonShown struct {
	jsonMessage
	Queue  string `json:"queue"`
	PID    uint32 `json:"pid"`
	UID    uint32 `json:"uid"`
	Header string `json:"header"`
	Body   string `json:"body"`
}

// ShowJSON writes the message as one JSON object on one line: the members
// of the --json listing, plus "queue", "uid", "pid", "header" and "body"
// (the content as stored; invalid UTF-8 reads as U+FFFD, as JSON cannot
// carry it), and each recipient's "history" from hist.
func ShowJSON(w io.Writer, r Report, m *queue.Message, hist History, content io.Reader) error {
	header, body, err := splitContent(content)
	var rest strings.Builder
	if err == nil && body != nil {
		_, err = io.Copy(&rest, body)
	}
	if err != nil {
		return err
	}
	js := jsonShown{jsonMessage: toJSON(r, m), Queue: r.Dir, PID: m.PID, UID: m.UID,
		Header: string(header), Body: rest.String()}
	for i := range js.Recipients {
		for _, a := range hist[js.Recipients[i].Address] {
			js.Recipients[i].History = append(js.Recipients[i].History, jsonAttempt{Time: a.Time.Unix(), Result: a.Result, Host: a.Host, Reply: a.Reply})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(&js)
}

// outcome is the last outcome's fields as --json names them (status,
// reply_code, stage, remote_host, remote_addr), each " name=value" with
// the log's quoting (a stage such as "RCPT TO" has a space; a host name
// comes from a peer), those that do not apply left out: the text shows
// what the JSON shows.
func outcome(o queue.Outcome) string {
	var b strings.Builder
	add := func(name, v string) {
		if v != "" {
			b.WriteString(" " + name + "=" + logline.Quote(v))
		}
	}
	add("status", o.Status)
	if o.Code != 0 {
		add("reply_code", strconv.Itoa(o.Code))
	}
	add("stage", o.Stage)
	add("remote_host", o.Host)
	add("remote_addr", o.Addr)
	return b.String()
}
