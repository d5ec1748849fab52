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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"gw/lib/logline"
	"gw/lib/queue"
)

// Metrics is one daemon's counters.
type Metrics struct {
	Registry   *prometheus.Registry
	messages   *prometheus.CounterVec
	recipients *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	delay      prometheus.Histogram
	tls        *prometheus.CounterVec
	verdicts   *prometheus.CounterVec
	now        func() time.Time
}

// New returns the counters of program (gw-smtpd, gw-send, …), every
// series labelled with it.
func New(program string) *Metrics {
	c := prometheus.Labels{"program": program}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gw_messages_total", ConstLabels: c,
			Help: "Messages at the end of DATA, by result (accepted, refused) and reason."}, []string{"result", "reason"}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gw_recipients_total", ConstLabels: c,
			Help: "Recipients at RCPT, by result (accept, reject) and reason."}, []string{"result", "reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gw_deliveries_total", ConstLabels: c,
			Help: "Delivery attempts to a recipient, by result and whether TLS carried them."}, []string{"result", "tls"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gw_queue_delay_seconds", ConstLabels: c,
			Help:    "From queueing to the delivery or the failure that ended a recipient's stay.",
			Buckets: []float64{1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 5 * 86400}}),
		tls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gw_tls_sessions_total", ConstLabels: c,
			Help: "STARTTLS handshakes of the listener, by result."}, []string{"result"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gw_scan_verdicts_total", ConstLabels: c,
			Help: "Scanned messages, by the action taken."}, []string{"action"}),
		now: time.Now,
	}
	m.Registry.MustRegister(m.messages, m.recipients, m.deliveries, m.delay, m.tls, m.verdicts)
	return m
}

// isWord bounds a label to the identifier-like words the daemons log as
// reasons, a lower-case letter then up to 31 lower-case letters, digits
// or '_': anything else (an error text) counts as "other", so that a
// peer cannot make a series a message. A loop, not a regular expression:
// that one, built at every program's start, cost each start (gw-scan's
// wrapper and gw-queue, once a message) 0.15–0.4 ms and 379 allocations.
func isWord(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func label(v any) string {
	s := fmt.Sprint(v)
	if v == nil || s == "" {
		return "none"
	}
	if !isWord(s) {
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
		m.messages.WithLabelValues("accepted", "none").Inc()
	case "refused":
		m.messages.WithLabelValues("refused", label(f("reason"))).Inc()
	case "rcpt":
		m.recipients.WithLabelValues(label(f("result")), label(f("reason"))).Inc()
	case "delivery":
		result := label(f("result"))
		m.deliveries.WithLabelValues(result, label(f("tls"))).Inc()
		if result == "delivered" || result == "failed" {
			if id, err := queue.ParseID(fmt.Sprint(f("qid"))); err == nil {
				m.delay.Observe(max(m.now().Sub(id.Time()).Seconds(), 0))
			}
		}
	case "tls":
		if r := f("result"); r != nil {
			m.tls.WithLabelValues(label(r)).Inc()
		} else {
			m.tls.WithLabelValues("ok").Inc()
		}
	case "verdict":
		m.verdicts.WithLabelValues(label(f("action"))).Inc()
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
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
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
