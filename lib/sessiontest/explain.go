package sessiontest

import (
	"io"
	"strings"
	"sync"

	"gw/lib/logline"
)

// Prefix starts every explanation line: no SMTP reply starts so, so a
// reader (or a script) tells the two apart.
const Prefix = ">>> "

// Explainer writes the explanation lines into the transcript.
type Explainer struct {
	out io.Writer
	mu  *sync.Mutex
}

// NewExplainer writes to out, holding mu for each line (the Conn's).
func NewExplainer(out io.Writer, mu *sync.Mutex) *Explainer {
	return &Explainer{out: out, mu: mu}
}

// Line writes one explanation; a line break inside it starts another
// prefixed line, so nothing it says can pass for a reply.
func (e *Explainer) Line(text string) {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(Prefix + l + "\n")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	io.WriteString(e.out, b.String())
}

// quiet are the log events the explanations already tell in words
// ("accepted" by the Injector's "not queued").
var quiet = map[string]bool{"connect": true, "helo": true, "rcpt": true, "end": true, "accepted": true, "callout": true, "dnsbl": true}

// Tap makes the listener's own log events that the policy does not
// explain itself (SPF, DKIM and DMARC results, rate limits, milters,
// refusals at the end of DATA) explanation lines too, as the log would
// write them.
func (e *Explainer) Tap(log *logline.Logger) {
	log.Tap(func(severity, event string, kv []any) {
		if quiet[event] || event == "mail" && hasKV(kv, "result", "accept") {
			return
		}
		e.Line("log: " + strings.TrimSuffix(logline.Format(severity, event, kv...), "\n"))
	})
}

func hasKV(kv []any, k, v string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == k && kv[i+1] == v {
			return true
		}
	}
	return false
}
