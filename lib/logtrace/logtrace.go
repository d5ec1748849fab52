// Package logtrace follows one message through the logs of gw's daemons,
// as multilog (tai64n stamps) or svlogd -tt keeps them: gw-smtpd's or
// gw-qmtpd's accepted line, gw-queued's queued line and gw-send's
// delivery lines share the message's qid; a Message-ID leads to its qids
// through the accepted lines' msgid=.
package logtrace

import (
	"bufio"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Line is one log line with its stamp decoded and its fields split.
type Line struct {
	Time     time.Time
	Source   string // the log directory it was read from, or its label
	Instance string // the instance whose log it is; "" when unknown
	Text     string // the line after the stamp
	Fields   map[string]string
}

// maxLine bounds a line read: multilog and svlogd cut theirs shorter.
const maxLine = 64 << 10

// ReadDir reads a multilog or svlogd directory: its rotated files
// (@*.s, @*.u) and current. A line whose stamp cannot be read is skipped:
// it cannot be put in order.
func ReadDir(dir, source string) ([]Line, error) {
	return ReadDirFunc(dir, source, nil)
}

// ReadDirFunc reads dir as ReadDir does, keeping only the lines keep
// says yes to (all when keep is nil): a reader that wants one kind of
// line holds no more of a large log than those.
func ReadDirFunc(dir, source string, keep func(Line) bool) ([]Line, error) {
	rotated, _ := filepath.Glob(filepath.Join(dir, "@*"))
	sort.Strings(rotated)
	var out []Line
	found := false
	for _, p := range append(rotated, filepath.Join(dir, "current")) {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		found = true
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 4096), maxLine)
		for sc.Scan() {
			if l, ok := Parse(sc.Text()); ok && (keep == nil || keep(l)) {
				l.Source = source
				out = append(out, l)
			}
		}
		f.Close()
	}
	if !found {
		return nil, errors.New(dir + ": no log files (current, @*.s)")
	}
	return out, nil
}

// Parse splits a stamped line: "@" and 24 hex digits (tai64n), or svlogd
// -tt's "YYYY-MM-DD_HH:MM:SS.fraction", then the line gw wrote.
func Parse(s string) (Line, bool) {
	stamp, text, ok := strings.Cut(s, " ")
	if !ok {
		return Line{}, false
	}
	t, ok := stampTime(stamp)
	if !ok {
		return Line{}, false
	}
	return Line{Time: t, Text: text, Fields: fields(text)}, true
}

// tai64Base is the TAI64 label of 1970-01-01 00:00:10 TAI, which
// daemontools takes as the Unix epoch (TAI was then 10 s ahead of UTC;
// later leap seconds are not counted, as tai64nlocal does not).
const tai64Base = 1<<62 + 10

func stampTime(s string) (time.Time, bool) {
	if len(s) == 25 && s[0] == '@' {
		b, err := hex.DecodeString(s[1:])
		if err != nil {
			return time.Time{}, false
		}
		var sec, nsec uint64
		for _, x := range b[:8] {
			sec = sec<<8 | uint64(x)
		}
		for _, x := range b[8:] {
			nsec = nsec<<8 | uint64(x)
		}
		if sec < tai64Base || sec > tai64Base+1<<40 || nsec >= 1e9 {
			return time.Time{}, false
		}
		return time.Unix(int64(sec-tai64Base), int64(nsec)).UTC(), true
	}
	t, err := time.Parse("2006-01-02_15:04:05.999999999", s)
	return t, err == nil
}

// fields splits "severity event k=v k="quoted v"" into its key=value
// fields; the severity and event are under "" and "event".
func fields(text string) map[string]string {
	m := map[string]string{}
	sev, rest, _ := strings.Cut(text, " ")
	m[""] = sev
	ev, rest, _ := strings.Cut(rest, " ")
	m["event"] = ev
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		k, after, ok := strings.Cut(rest, "=")
		if !ok || strings.Contains(k, " ") {
			break
		}
		var v string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = after[len(q):]
		} else {
			v, rest, _ = strings.Cut(after, " ")
		}
		m[k] = v
	}
	return m
}

// Trace picks out of lines those about the message id names: a qid, or a
// Message-ID (with or without its angle brackets), which stands for the
// qids of the accepted lines that name it, and for the messages the
// refused and discarded lines that name it (msgid=) are about. Hops between instances are
// followed both ways: an accepted line's prev=HOST/QID joins its qid to
// the one it came from. The lines of the sessions that accepted it come
// too: its own (msg=), the session's connect, helo and end, and the MAIL
// and RCPT lines of its transaction. A session id (sid=) or a message's
// id in its session (msg=) stands for the messages of that session: a
// message refused at DATA has no qid but is found so. They are returned in time order, lines of one stamp in the
// order read.
//
// A qid or session is taken within its line's Instance: each queue draws
// its ids from a clock of its own, and two instances busy at once may
// draw the same one. Lines of no known instance ("") are one scope.
func Trace(lines []Line, id string) []Line {
	qids := map[scoped]bool{}
	msgs := map[scoped]bool{}
	if !isMessageID(id) {
		bySession(lines, id, qids, msgs)
	}
	for _, l := range lines {
		q := l.Fields["qid"]
		if isMessageID(id) {
			want := strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
			if v, ok := l.Fields["msgid"]; ok && strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">") == want {
				if q != "" {
					qids[scoped{l.Instance, q}] = true
				} else if m := l.Fields["msg"]; m != "" {
					// refused or discarded: no qid, its session's id
					msgs[scoped{l.Instance, m}] = true
				}
			}
		} else if q != "" && q == id {
			qids[scoped{l.Instance, q}] = true
		}
	}
	followHops(lines, qids)
	for _, l := range lines {
		if l.Fields["event"] == "accepted" && qids[scoped{l.Instance, l.Fields["qid"]}] && l.Fields["msg"] != "" {
			msgs[scoped{l.Instance, l.Fields["msg"]}] = true
		}
	}
	bounced := map[string]bool{}
	for k := range qids {
		bounced[k.id] = true
	}
	inSession := transactionLines(lines, msgs)
	var out []Line
	for i, l := range lines {
		// A bounce's qid is in another queue when a bounce instance
		// sends it: the line naming it (bounce=) is taken by value.
		if qids[scoped{l.Instance, l.Fields["qid"]}] || msgs[scoped{l.Instance, l.Fields["msg"]}] ||
			inSession[i] || (l.Fields["bounce"] != "" && bounced[l.Fields["bounce"]]) {
			out = append(out, l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// bySession adds to qids and msgs what a session id (sid=) or a
// message's id within its session (msg=, SID.N) names: the messages of
// the session, and the qids its accepted lines gave them. A refused
// message has no qid; its session is how it is found.
func bySession(lines []Line, id string, qids, msgs map[scoped]bool) {
	for _, l := range lines {
		if l.Fields["sid"] != id && l.Fields["msg"] != id {
			continue
		}
		if l.Fields["msg"] != "" && (l.Fields["msg"] == id || l.Fields["sid"] == id) {
			msgs[scoped{l.Instance, l.Fields["msg"]}] = true
			if q := l.Fields["qid"]; q != "" && l.Fields["event"] == "accepted" {
				qids[scoped{l.Instance, q}] = true
			}
		}
		if l.Fields["sid"] == id && l.Fields["msg"] == "" {
			// a session that ended before any DATA: its own lines
			msgs[scoped{l.Instance, id + ".0"}] = true
		}
	}
}

// sessionWide are the events of a listener's session that concern every
// message of it: how the client came, who it said it was, how it left.
var sessionWide = map[string]bool{"connect": true, "helo": true, "auth": true, "pregreet": true, "end": true}

// transactionLines marks, in lines, the session lines without msg= that
// belong to one of msgs (SID.N): the session-wide lines, and those of the
// transaction that led to message N (MAIL, RCPT and their checks: the
// lines after the end of message N-1). A line is given to the message
// whose DATA followed it, as the listener numbers messages at DATA; a
// transaction reset before DATA goes with the next message's.
func transactionLines(lines []Line, msgs map[scoped]bool) map[int]bool {
	want := map[scoped]map[int]bool{} // session: the message numbers traced
	for m := range msgs {
		i := strings.LastIndexByte(m.id, '.')
		if i <= 0 {
			continue
		}
		n, err := strconv.Atoi(m.id[i+1:])
		if err != nil {
			continue
		}
		k := scoped{m.instance, m.id[:i]}
		if want[k] == nil {
			want[k] = map[int]bool{}
		}
		want[k][n] = true
	}
	marked := map[int]bool{}
	if len(want) == 0 {
		return marked
	}
	next := map[scoped]int{} // session: the number its next DATA gets
	for i, l := range lines {
		sid := l.Fields["sid"]
		if sid == "" {
			continue
		}
		k := scoped{l.Instance, sid}
		ns, ok := want[k]
		if !ok {
			continue
		}
		if next[k] == 0 {
			next[k] = 1
		}
		if msg := l.Fields["msg"]; msg != "" {
			// a message's own line: later lines go with the next one
			if j := strings.LastIndexByte(msg, '.'); j >= 0 {
				if n, err := strconv.Atoi(msg[j+1:]); err == nil && n+1 > next[k] {
					next[k] = n + 1
				}
			}
			continue
		}
		if sessionWide[l.Fields["event"]] || ns[next[k]] || ns[0] {
			marked[i] = true
		}
	}
	return marked
}

// scoped is a qid or session id within its instance.
type scoped struct{ instance, id string }

// followHops adds to qids, until nothing more is added, the qids that an
// accepted line's prev= joins to one already there: the same message in
// the instance before it or after it. The qid prev= names is looked for
// in the other instances (the name in prev= is a host's, which several
// instances may share), or anywhere among lines of no known instance.
func followHops(lines []Line, qids map[scoped]bool) {
	where := map[string][]string{} // qid: the instances whose lines name it
	seen := map[scoped]bool{}
	type link struct {
		here scoped
		prev string
	}
	var links []link
	for _, l := range lines {
		q := l.Fields["qid"]
		if q == "" {
			continue
		}
		if k := (scoped{l.Instance, q}); !seen[k] {
			seen[k] = true
			where[q] = append(where[q], l.Instance)
		}
		if l.Fields["event"] != "accepted" {
			continue
		}
		if i := strings.LastIndexByte(l.Fields["prev"], '/'); i >= 0 && i < len(l.Fields["prev"])-1 {
			links = append(links, link{scoped{l.Instance, q}, l.Fields["prev"][i+1:]})
		}
	}
	for grown := true; grown; {
		grown = false
		for _, k := range links {
			for _, inst := range where[k.prev] {
				if inst == k.here.instance && inst != "" {
					continue
				}
				p := scoped{inst, k.prev}
				if qids[k.here] != qids[p] {
					qids[k.here], qids[p], grown = true, true, true
				}
			}
		}
	}
}

// isMessageID tells a Message-ID from a qid: a qid is hex digits only.
func isMessageID(s string) bool {
	return strings.ContainsAny(s, "<@>")
}

// Attempt is one delivery attempt to one recipient, as gw-send's
// delivery line tells it.
type Attempt struct {
	Time   time.Time
	Result string // delivered, deferred, failed
	Host   string // the host tried, when one was
	Reply  string // the outcome on one line, or the reply that took it
}

// IsDelivery keeps gw-send's delivery lines, those Attempts reads.
func IsDelivery(l Line) bool { return l.Fields["event"] == "delivery" }

// Attempts returns, by recipient address, the delivery attempts the lines
// record for the message qid, in time order. The journal keeps only each
// recipient's latest outcome; the log keeps every one.
func Attempts(lines []Line, qid string) map[string][]Attempt {
	out := map[string][]Attempt{}
	for _, l := range lines {
		f := l.Fields
		if f["event"] != "delivery" || f["qid"] != qid || f["rcpt"] == "" {
			continue
		}
		out[f["rcpt"]] = append(out[f["rcpt"]], Attempt{Time: l.Time, Result: f["result"], Host: f["host"], Reply: f["reply"]})
	}
	for _, a := range out {
		sort.SliceStable(a, func(i, j int) bool { return a[i].Time.Before(a[j].Time) })
	}
	return out
}
