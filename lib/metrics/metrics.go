// Package metrics serves a daemon's counters in Prometheus' format on an
// optional loopback listener (--metrics ADDRESS): messages accepted and
// refused by reason, recipients refused by reason, deliveries by result,
// the queue delay of finished deliveries, TLS sessions, scan verdicts.
//
// The counters are fed by the daemon's log (logline.Logger.Tap): each
// event counted is the event logged, so that the log and the metrics
// cannot tell two stories. gw-qstat metrics, for node_exporter's textfile
// collector, shows the queue's contents beside these.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/urfave/cli/v2"

	"gw/lib/logline"
	"gw/lib/queue"
)

// Metrics is one daemon's counters, served in Prometheus' text format
// (exposition.go). gw writes the format itself, as gw-qstat does: the
// client library registered collectors and built its tables at the start
// of every program that linked it, gw-scan's wrapper among them, which
// starts once a message, while only the daemons started with --metrics
// serve anything.
type Metrics struct {
	program    string
	messages   *counterVec
	recipients *counterVec
	deliveries *counterVec
	delay      *histogram
	tls        *counterVec
	verdicts   *counterVec
	now        func() time.Time
}

// New returns the counters of program (gw-smtpd, gw-send, …), every
// series labelled with it.
func New(program string) *Metrics {
	return &Metrics{
		program: program,
		messages: newCounterVec("gw_messages_total",
			"Messages at the end of DATA, by result (accepted, refused) and reason.", "result", "reason"),
		recipients: newCounterVec("gw_recipients_total",
			"Recipients at RCPT, by result (accept, reject) and reason.", "result", "reason"),
		deliveries: newCounterVec("gw_deliveries_total",
			"Delivery attempts to a recipient, by result and whether TLS carried them.", "result", "tls"),
		delay: newHistogram("gw_queue_delay_seconds",
			"From queueing to the delivery or the failure that ended a recipient's stay.",
			[]float64{1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 5 * 86400}),
		tls: newCounterVec("gw_tls_sessions_total",
			"STARTTLS handshakes of the listener, by result.", "result"),
		verdicts: newCounterVec("gw_scan_verdicts_total",
			"Scanned messages, by the action taken.", "action"),
		now: time.Now,
	}
}

// word bounds a label to the identifier-like words the daemons log as
// reasons: anything else (an error text) counts as "other", so that a
// peer cannot make a series a message.
var word = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

func label(v any) string {
	s := fmt.Sprint(v)
	if v == nil || s == "" {
		return "none"
	}
	if !word.MatchString(s) {
		return "other"
	}
	return s
}

// Observe counts one logged event; it is the logger's tap.
func (m *Metrics) Observe(severity, event string, kv []any) {
	f := func(key string) any {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == key {
				return kv[i+1]
			}
		}
		return nil
	}
	switch event {
	case "accepted":
		m.messages.inc("accepted", "none")
	case "refused":
		m.messages.inc("refused", label(f("reason")))
	case "rcpt":
		m.recipients.inc(label(f("result")), label(f("reason")))
	case "delivery":
		result := label(f("result"))
		m.deliveries.inc(result, label(f("tls")))
		if result == "delivered" || result == "failed" {
			if id, err := queue.ParseID(fmt.Sprint(f("qid"))); err == nil {
				m.delay.observe(max(m.now().Sub(id.Time()).Seconds(), 0))
			}
		}
	case "tls":
		if r := f("result"); r != nil {
			m.tls.inc(label(r))
		} else {
			m.tls.inc("ok")
		}
	case "verdict":
		m.verdicts.inc(label(f("action")))
	}
}

// ErrNotLoopback refuses a metrics address off loopback: the counters
// describe the mail flow and are for the host's own scraper.
var ErrNotLoopback = errors.New("the metrics listener binds to a loopback address only")

// Listen opens the metrics listener on addr, a loopback host:port.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
		_, port, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--metrics %s: %w", addr, ErrNotLoopback)
	}
	return net.Listen("tcp", addr)
}

// Serve answers GET /metrics on l until l is closed.
func (m *Metrics) Serve(l net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		m.WriteTo(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(l)
}

// Start serves program's counters on addr (a loopback host:port), fed by
// log's events; "" starts nothing. A daemon calls it once, before it
// drops its privileges.
func Start(program, addr string, log *logline.Logger) error {
	if addr == "" {
		return nil
	}
	l, err := Listen(addr)
	if err != nil {
		return err
	}
	m := New(program)
	log.Tap(m.Observe)
	go func() {
		if err := m.Serve(l); err != nil {
			log.Warning("metrics", "addr", l.Addr(), "err", err)
		}
	}()
	log.Info("metrics", "addr", l.Addr())
	return nil
}

// Flag is the --metrics option every daemon that counts shares.
func Flag(dst *string) *cli.StringFlag {
	return &cli.StringFlag{Name: "metrics", Usage: "serve Prometheus counters on the loopback `ADDRESS` (host:port) at /metrics", Destination: dst}
}
