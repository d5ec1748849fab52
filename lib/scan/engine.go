// Package scan is gw-scan's engine: it checks a spooled message with clamd,
// spamd, rspamd and the built-in MIME rules, decides an action for each
// recipient from the instance's policy, and rewrites the header (strip what
// outsiders may forge, add what the scan found).
//
// Implementation summary. A message is scanned from its spool, read at
// will, never from a stream: an unlinked file, or a proxy session's
// buffer for a message under memSpoolMax (spool.go). clamd (INSTREAM),
// spamd (SYMBOLS) and the MIME walk each read their own section of it,
// one after another. Their results
// become classes (virus, banned, bomb, spamkill, spam, badmime, fail); the
// Policy turns classes into one Action per recipient (verdict.go). Two
// front ends use the engine: Wrap, qmail-queue's interface for $QMAILQUEUE
// (wrapper.go), and Proxy, an SMTP relay from 10024 to 10025 (proxy.go).
// Quarantined messages are files in the instance's quarantine directory
// (quarantine.go).
package scan

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gw/lib/envelope"
	"gw/lib/logline"
)

// Scanner is the configured engine.
type Scanner struct {
	Clamd    *Clamd  // nil: no virus scan but the built-in rules
	Spamd    *Spamd  // nil: no spam check
	Rspamd   *Rspamd // nil: no rspamd
	MIME     *MIMERules
	Policy   *Policy
	SpamKill float64 // score at or over which class spamkill applies; 0: never
	Hostname string  // for X-Virus-Scanned
	Log      *logline.Logger
	Trust    *Trust // nil: no "checked once" token
}

// Report is what one scan found.
type Report struct {
	ID        string // the scan's id: quarantine file name, log key
	Size      int64
	Clamd     *ClamdResult
	ClamdMs   int64
	ClamdErr  error
	Spam      *SpamResult
	SpamMs    int64
	SpamErr   error
	Rspamd    *RspamdResult
	RspamdMs  int64
	RspamdErr error
	// Defer is the text of a 451 rspamd asked for (greylist, soft
	// reject): not a class of content but "not now", so no per-domain
	// policy turns it into a delivery.
	Defer   string
	MIME    *Finding
	MIMEErr error
	Trusted bool     // a valid token: not scanned again
	Classes []string // strongest first
}

// Scan checks the size bytes of spool. Scanner errors become class fail;
// a message over a scanner's size limit is not sent to it, and says so in
// the log (skipped), as spamc passes large mail. meta is what rspamd is
// told of the envelope and the client.
func (s *Scanner) Scan(ctx context.Context, spool io.ReaderAt, size int64, id string, meta Meta) *Report {
	rep := &Report{ID: id, Size: size}
	if s.Trust != nil && s.Trust.Verify(io.NewSectionReader(spool, 0, size)) {
		rep.Trusted = true
		return rep
	}
	// The engines are asked one after another on the caller's
	// goroutine, not at once: a goroutine an engine is a hand-off and
	// a thread woken each message, which at a scanner's pace (spamd's
	// ten a second) cost more CPU than the few milliseconds clamd adds
	// ahead of spamd's hundred. Each keeps its own timeout.
	if s.Clamd != nil {
		t := time.Now()
		res, err := s.Clamd.Scan(ctx, io.NewSectionReader(spool, 0, size), size)
		rep.ClamdMs = time.Since(t).Milliseconds()
		if err != nil {
			rep.ClamdErr = err
		} else {
			rep.Clamd = &res
		}
	}
	if s.MIME != nil {
		rep.MIME, rep.MIMEErr = s.MIME.Inspect(io.NewSectionReader(spool, 0, size))
	}
	if s.Spamd != nil {
		t := time.Now()
		res, err := s.Spamd.Check(ctx, io.NewSectionReader(spool, 0, size), size)
		rep.SpamMs = time.Since(t).Milliseconds()
		if err != nil {
			rep.SpamErr = err
		} else {
			rep.Spam = &res
		}
	}
	if s.Rspamd != nil {
		t := time.Now()
		res, err := s.Rspamd.Check(ctx, io.NewSectionReader(spool, 0, size), size, meta)
		rep.RspamdMs = time.Since(t).Milliseconds()
		if err != nil {
			rep.RspamdErr = err
		} else {
			rep.Rspamd = &res
		}
	}
	found := map[string]bool{}
	if rep.Clamd != nil && rep.Clamd.Infected {
		found[ClassVirus] = true
	}
	if rep.MIME != nil {
		found[rep.MIME.Class] = true
	}
	if rep.Spam != nil && rep.Spam.Spam {
		found[ClassSpam] = true
	}
	if rep.Spam != nil && s.SpamKill > 0 && rep.Spam.Score >= s.SpamKill {
		found[ClassSpamKill] = true
	}
	rspamdClasses(rep, found)
	if failed(rep.ClamdErr) || failed(rep.SpamErr) || failed(rep.RspamdErr) || rep.MIMEErr != nil {
		found[ClassFail] = true
	}
	for _, c := range classes {
		if found[c] {
			rep.Classes = append(rep.Classes, c)
		}
	}
	return rep
}

// rspamdClasses maps rspamd's action: reject is class spamkill (refused
// by default), add header and rewrite subject are class spam (tagged by
// default); greylist and soft reject ask for a 451, whatever the policy.
func rspamdClasses(rep *Report, found map[string]bool) {
	if rep.Rspamd == nil {
		return
	}
	switch rep.Rspamd.Action {
	case RspamdReject:
		found[ClassSpamKill] = true
	case RspamdAddHeader, RspamdRewriteSubject:
		found[ClassSpam] = true
	case RspamdGreylist:
		rep.Defer = "greylisted, try again later"
	case RspamdSoftReject:
		rep.Defer = "message deferred by the content filter, try again later"
	}
}

// failed reports whether a scanner error is a failure (too big is not: it
// is a documented limit, logged as skipped).
func failed(err error) bool { return err != nil && err != ErrTooBig }

// LogVerdict writes the one line a message gets: the scan id, the
// session's message id when known, what each engine said and how long it
// took, and the actions.
func (s *Scanner) LogVerdict(rep *Report, msgID string, rcpts []string, acts []Action, extra ...any) {
	kv := []any{"scan", rep.ID}
	if msgID != "" {
		kv = append(kv, "msg", msgID)
	}
	kv = append(kv, "size", rep.Size, "rcpts", len(rcpts), "action", summarize(acts))
	if len(rep.Classes) > 0 {
		kv = append(kv, "classes", strings.Join(rep.Classes, ","))
	}
	if rep.Trusted {
		kv = append(kv, "trusted", "yes")
	}
	if s.Clamd != nil && !rep.Trusted {
		kv = append(kv, "clamd", clamdWord(rep), "clamd_ms", rep.ClamdMs)
	}
	if s.Spamd != nil && !rep.Trusted {
		kv = append(kv, "spamd", spamdWord(rep), "spamd_ms", rep.SpamMs)
		if rep.Spam != nil {
			kv = append(kv, "score", fmt.Sprintf("%.1f/%.1f", rep.Spam.Score, rep.Spam.Threshold), "tests", strings.Join(rep.Spam.Symbols, ","))
		}
	}
	if s.Rspamd != nil && !rep.Trusted {
		kv = append(kv, "rspamd", rspamdWord(rep), "rspamd_ms", rep.RspamdMs)
		if r := rep.Rspamd; r != nil {
			kv = append(kv, "rspamd_score", fmt.Sprintf("%.1f/%.1f", r.Score, r.Required), "symbols", strings.Join(r.Symbols, ","))
		}
	}
	if rep.MIME != nil {
		kv = append(kv, "mime", rep.MIME.String())
	}
	kv = append(kv, extra...)
	sev := "info"
	if len(rep.Classes) > 0 && rep.Classes[len(rep.Classes)-1] == ClassFail {
		sev = "warning"
		if rep.ClamdErr != nil {
			kv = append(kv, "clamd_err", rep.ClamdErr)
		}
		if rep.SpamErr != nil {
			kv = append(kv, "spamd_err", rep.SpamErr)
		}
		if rep.RspamdErr != nil {
			kv = append(kv, "rspamd_err", rep.RspamdErr)
		}
		if rep.MIMEErr != nil {
			kv = append(kv, "mime_err", rep.MIMEErr)
		}
	}
	s.Log.Log(sev, "verdict", kv...)
}

func clamdWord(rep *Report) string {
	switch {
	case rep.ClamdErr == ErrTooBig:
		return "skipped"
	case rep.ClamdErr != nil:
		return "error"
	case rep.Clamd.Infected:
		return rep.Clamd.Name
	}
	return "clean"
}

func spamdWord(rep *Report) string {
	switch {
	case rep.SpamErr == ErrTooBig:
		return "skipped"
	case rep.SpamErr != nil:
		return "error"
	case rep.Spam.Spam:
		return "spam"
	}
	return "ham"
}

// summarize names the actions: "reject", or "tag,quarantine" for mixed.
func summarize(acts []Action) string {
	seen := map[Action]bool{}
	var names []string
	for _, a := range acts {
		if !seen[a] {
			seen[a] = true
			names = append(names, a.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Plan is what a verdict does with one message: refuse it whole
// (Refuse is Reject or Tempfail), or deliver it to some recipients, with
// the headers of action Tag, and hold it for others; the recipients left
// out of both are discarded.
type Plan struct {
	Acts          []Action // one a recipient
	Refuse        Action   // Reject, Tempfail, or Pass when not refused
	Text          string   // the refusal's text when a scanner gave one (rspamd's greylist)
	Deliver, Held envelope.Envelope
	Tag           Action
}

// Plan decides, from rep and the policy, what becomes of the message with
// envelope e. A trusted message passes for every recipient.
func (s *Scanner) Plan(rep *Report, e envelope.Envelope) Plan {
	p := Plan{Acts: s.Policy.Decide(e.Recipients, rep.Classes)}
	if rep.Trusted {
		clear(p.Acts)
	}
	if st := Strongest(p.Acts); st == Reject || st == Tempfail {
		p.Refuse = st
		return p
	}
	if rep.Defer != "" && !rep.Trusted {
		p.Refuse, p.Text = Tempfail, rep.Defer
		return p
	}
	p.Deliver.Sender, p.Held.Sender = e.Sender, e.Sender
	p.Deliver.DSN, p.Held.DSN = e.DSN, e.DSN // the DSN parameters go with each recipient
	p.Deliver.RequireTLS, p.Held.RequireTLS = e.RequireTLS, e.RequireTLS
	for i, a := range p.Acts {
		switch a {
		case Quarantine:
			p.Held.Add(e.Recipients[i], e.RcptDSNOf(i))
		case Pass, Tag:
			p.Deliver.Add(e.Recipients[i], e.RcptDSNOf(i))
			p.Tag = max(p.Tag, a)
		}
	}
	return p
}

// Strongest returns the strongest of acts.
func Strongest(acts []Action) Action {
	var s Action
	for _, a := range acts {
		s = max(s, a)
	}
	return s
}

// Headers returns the header lines the scan adds, each ending in LF:
// X-Virus-Scanned, X-Spam-Status, X-Spam-Score and X-Spam-Level when spamd
// answered, X-Spam-Flag when tagging spam, X-GW-Alert for other tagged
// classes and for mail passed unscanned. A message an engine did not look
// at says so in that engine's field ("no ...", "unchecked ..."): a field
// that claims a scan is written only after the scan.
func (s *Scanner) Headers(rep *Report, act Action) []string {
	var h []string
	if rep.Trusted {
		return nil
	}
	if v := s.virusScanned(rep); v != "" {
		h = append(h, "X-Virus-Scanned: "+v+"\n")
	}
	if sp := rep.Spam; sp != nil {
		yes := "No"
		if sp.Spam {
			yes = "Yes"
		}
		h = append(h, fmt.Sprintf("X-Spam-Status: %s, score=%.1f required=%.1f tests=%s\n", yes, sp.Score, sp.Threshold, foldList(sp.Symbols)))
		h = append(h, "X-Spam-Score: "+strconv.FormatFloat(sp.Score, 'f', 1, 64)+"\n")
		h = append(h, "X-Spam-Level: "+strings.Repeat("*", min(50, max(0, int(sp.Score))))+"\n")
	} else if s.Spamd != nil {
		why := "spamd unavailable"
		if rep.SpamErr == ErrTooBig {
			why = fmt.Sprintf("%d bytes over spamdmaxbytes %d", rep.Size, s.Spamd.MaxSize)
		}
		h = append(h, "X-Spam-Status: unchecked ("+why+") gw-scan at "+s.Hostname+"\n")
	}
	h = append(h, s.rspamdHeaders(rep, act)...)
	if act >= Tag {
		for _, c := range rep.Classes {
			switch c {
			case ClassSpam, ClassSpamKill:
				if !hasPrefix(h, "X-Spam-Flag:") {
					h = append(h, "X-Spam-Flag: YES\n")
				}
			case ClassVirus:
				h = append(h, "X-GW-Alert: virus "+virusName(rep)+"\n")
			case ClassBanned, ClassBomb, ClassBadMIME:
				h = append(h, "X-GW-Alert: "+c+" "+sanitize(rep.MIME.String())+"\n")
			}
		}
	}
	if failed(rep.ClamdErr) || failed(rep.SpamErr) || failed(rep.RspamdErr) || rep.MIMEErr != nil {
		h = append(h, "X-GW-Alert: unscanned (scanner unavailable)\n")
	}
	return h
}

// rspamdHeaders are X-Rspamd-Status (what rspamd said, or why it was not
// asked) and the fields rspamd's reply asks to add; for "rewrite
// subject", when the message is tagged, the new Subject (the old one is
// dropped by Drops).
func (s *Scanner) rspamdHeaders(rep *Report, act Action) []string {
	if s.Rspamd == nil {
		return nil
	}
	r := rep.Rspamd
	if r == nil {
		why := "rspamd unavailable"
		if rep.RspamdErr == ErrTooBig {
			why = fmt.Sprintf("%d bytes over rspamdmaxbytes %d", rep.Size, s.Rspamd.MaxSize)
		}
		return []string{"X-Rspamd-Status: unchecked (" + why + ") gw-scan at " + s.Hostname + "\n"}
	}
	h := []string{fmt.Sprintf("X-Rspamd-Status: %s, score=%.1f required=%.1f symbols=%s\n", sanitize(r.Action), r.Score, r.Required, foldList(r.Symbols))}
	for _, f := range r.AddHeaders {
		h = append(h, f.FieldLine())
	}
	if subjectRewrite(rep, act) {
		h = append(h, HeaderField{Name: "Subject", Value: r.Subject}.FieldLine())
	}
	return h
}

func subjectRewrite(rep *Report, act Action) bool {
	return act >= Tag && rep.Rspamd != nil && rep.Rspamd.Action == RspamdRewriteSubject && rep.Rspamd.Subject != ""
}

// Drops is the fields the rewritten message loses at rspamd's request:
// its remove_headers, and the old Subject when the subject is rewritten.
func (s *Scanner) Drops(rep *Report, act Action) map[string]int {
	if rep.Rspamd == nil || rep.Trusted {
		return nil
	}
	d := map[string]int{}
	for n, i := range rep.Rspamd.RemoveHeaders {
		d[n] = i
	}
	if subjectRewrite(rep, act) {
		d["subject"] = 0
	}
	return d
}

// virusScanned is the value of X-Virus-Scanned: "gw-scan at HOST" only
// when clamd answered for this message; "no (WHY) gw-scan at HOST" when
// clamd was not asked (over clamdmaxbytes, none configured) or did not
// answer, saying whether the built-in MIME rules still looked.
func (s *Scanner) virusScanned(rep *Report) string {
	at := "gw-scan at " + s.Hostname
	if s.Clamd != nil && rep.Clamd != nil {
		return at
	}
	if s.Clamd == nil && s.MIME == nil {
		return ""
	}
	why := "no clamd"
	switch {
	case s.Clamd != nil && rep.ClamdErr == ErrTooBig:
		why = fmt.Sprintf("%d bytes over clamdmaxbytes %d", rep.Size, s.Clamd.MaxStream)
	case s.Clamd != nil:
		why = "clamd unavailable"
	}
	if s.MIME != nil && rep.MIMEErr == nil {
		why += "; MIME rules only"
	}
	return "no (" + why + ") " + at
}

func hasPrefix(h []string, p string) bool {
	for _, l := range h {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func virusName(rep *Report) string {
	if rep.Clamd != nil && rep.Clamd.Infected {
		return sanitize(rep.Clamd.Name)
	}
	if rep.MIME != nil {
		return sanitize(rep.MIME.String())
	}
	return "unknown"
}

// sanitize keeps printable ASCII, for text that goes into a header.
func sanitize(s string) string {
	b := []byte(truncate(s, 200))
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// foldList joins symbols, folding the header line before 78 columns.
func foldList(syms []string) string {
	if len(syms) == 0 {
		return "none"
	}
	var b strings.Builder
	col := 40
	for i, s := range syms {
		s = sanitize(s)
		if i > 0 {
			b.WriteByte(',')
			col++
			if col+len(s) > 76 {
				b.WriteString("\n\t")
				col = 8
			}
		}
		b.WriteString(s)
		col += len(s)
	}
	return b.String()
}

// NewID returns a scan id: the time in nanoseconds and the pid, in hex,
// unique on this host and a safe file name.
func NewID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 16) + "." + pidHex
}

// pidHex is the process's id once: os.Getpid is a system call each time.
var pidHex = strconv.FormatInt(int64(os.Getpid()), 16)
