package qstat

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Metrics writes the reports in Prometheus text exposition format 0.0.4,
// for node_exporter's textfile collector: write to a temporary file in its
// directory, then rename, so that it never reads half a file.
//
// The label naming the instance is gw_instance, not instance: Prometheus
// sets instance on every scraped series to the target (here node_exporter),
// and would rename ours to exported_instance.
func Metrics(w io.Writer, reps []Report, now time.Time) error {
	bw := bufio.NewWriter(w)
	// An unreadable instance has no series rather than zeros: absent()
	// alerts on it, and zeros would say its queue is empty.
	var ok []Report
	for _, r := range reps {
		if r.Err == nil {
			ok = append(ok, r)
		}
	}
	reps = ok
	counts := make([]Counts, len(reps))
	labels := make([]string, len(reps))
	for i, r := range reps {
		counts[i] = Count(r)
		labels[i] = `gw_instance="` + labelValue(r.Label()) + `"`
	}
	family := func(name, typ, help string, sample func(i int)) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for i := range reps {
			sample(i)
		}
	}
	family("gw_queue_messages", "gauge", "Messages in the queue by state (incoming, active, deferred, hold, done).", func(i int) {
		for s := Incoming; s < msgStateCount; s++ {
			fmt.Fprintf(bw, "gw_queue_messages{%s,state=\"%s\"} %d\n", labels[i], s, counts[i].Msg[s])
		}
	})
	family("gw_queue_recipients", "gauge", "Recipients of queued messages by state (pending, delivered, failed).", func(i int) {
		for _, s := range rcptStates {
			fmt.Fprintf(bw, "gw_queue_recipients{%s,state=\"%s\"} %d\n", labels[i], s, counts[i].Rcpt[s])
		}
	})
	family("gw_queue_oldest_message_age_seconds", "gauge", "Age of the oldest queued message; 0 when the queue is empty.", func(i int) {
		age := 0.0
		if o := counts[i].Oldest; !o.IsZero() {
			age = max(now.Sub(o).Seconds(), 0)
		}
		fmt.Fprintf(bw, "gw_queue_oldest_message_age_seconds{%s} %.0f\n", labels[i], age)
	})
	family("gw_queue_bytes", "gauge", "Bytes of queued messages as stored.", func(i int) {
		fmt.Fprintf(bw, "gw_queue_bytes{%s} %d\n", labels[i], counts[i].Bytes)
	})
	family("gw_queue_injections_in_progress", "gauge", "Injections under way: segments still being written.", func(i int) {
		fmt.Fprintf(bw, "gw_queue_injections_in_progress{%s} %d\n", labels[i], counts[i].InProgress)
	})
	family("gw_queue_problems", "gauge", "Torn, foreign or set-aside files in the queue.", func(i int) {
		fmt.Fprintf(bw, "gw_queue_problems{%s} %d\n", labels[i], counts[i].Problems)
	})
	return bw.Flush()
}

// labelValue escapes a label value as the text format requires; the
// format is UTF-8, and a directory name need not be.
func labelValue(s string) string {
	return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
