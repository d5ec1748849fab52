package metrics

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// contentType is Prometheus' text exposition format, version 0.0.4.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// counterVec is a family of counters told apart by label values.
type counterVec struct {
	name, help string
	labels     []string
	mu         sync.Mutex
	counts     map[string]uint64 // by the label values joined with labelSep
}

// labelSep joins label values in a key; label() never lets it in a value.
const labelSep = "\xff"

func newCounterVec(name, help string, labels ...string) *counterVec {
	return &counterVec{name: name, help: help, labels: labels, counts: map[string]uint64{}}
}

// inc adds one to the counter of values, one a label in order.
func (c *counterVec) inc(values ...string) {
	key := strings.Join(values, labelSep)
	c.mu.Lock()
	c.counts[key]++
	c.mu.Unlock()
}

// get is the counter of values.
func (c *counterVec) get(values ...string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[strings.Join(values, labelSep)]
}

// histogram counts observations in cumulative buckets, as Prometheus'
// histograms do: a bucket is every observation at or under its bound.
type histogram struct {
	name, help string
	bounds     []float64
	mu         sync.Mutex
	buckets    []uint64 // observations at or under bounds[i] and over the one before
	count      uint64
	sum        float64
}

func newHistogram(name, help string, bounds []float64) *histogram {
	return &histogram{name: name, help: help, bounds: bounds, buckets: make([]uint64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i, _ := slices.BinarySearch(h.bounds, v); i < len(h.bounds) {
		h.buckets[i]++
	}
	h.count++
	h.sum += v
}

// WriteTo writes every family in the text format: a counter family once
// it has a series, the histogram always. Label names are sorted, the
// program's among them, as Prometheus' own clients write them.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, c := range []*counterVec{m.messages, m.recipients, m.deliveries, m.tls, m.verdicts} {
		m.writeCounters(bw, c)
	}
	m.writeHistogram(bw, m.delay)
	err := bw.Flush()
	return cw.n, err
}

func (m *Metrics) writeCounters(w *bufio.Writer, c *counterVec) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	counts := make(map[string]uint64, len(c.counts))
	for k, v := range c.counts {
		counts[k] = v
	}
	c.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	for _, k := range keys {
		pairs := [][2]string{{"program", m.program}}
		for i, v := range strings.Split(k, labelSep) {
			pairs = append(pairs, [2]string{c.labels[i], v})
		}
		fmt.Fprintf(w, "%s%s %d\n", c.name, labelSet(pairs), counts[k])
	}
}

func (m *Metrics) writeHistogram(w *bufio.Writer, h *histogram) {
	h.mu.Lock()
	buckets, count, sum := slices.Clone(h.buckets), h.count, h.sum
	h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	prog := [2]string{"program", m.program}
	var cum uint64
	for i, b := range h.bounds {
		cum += buckets[i]
		le := [2]string{"le", strconv.FormatFloat(b, 'g', -1, 64)}
		fmt.Fprintf(w, "%s_bucket%s %d\n", h.name, labelSet([][2]string{prog, le}), cum)
	}
	fmt.Fprintf(w, "%s_bucket%s %d\n", h.name, labelSet([][2]string{prog, {"le", "+Inf"}}), count)
	fmt.Fprintf(w, "%s_sum%s %s\n", h.name, labelSet([][2]string{prog}), strconv.FormatFloat(sum, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count%s %d\n", h.name, labelSet([][2]string{prog}), count)
}

// labelSet writes {name="value",...}, the names sorted except le, which
// goes last as in Prometheus' histograms.
func labelSet(pairs [][2]string) string {
	slices.SortStableFunc(pairs, func(a, b [2]string) int {
		switch {
		case a[0] == "le" && b[0] != "le":
			return 1
		case b[0] == "le" && a[0] != "le":
			return -1
		}
		return strings.Compare(a[0], b[0])
	})
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0] + `="` + labelEscaper.Replace(strings.ToValidUTF8(p[1], "\uFFFD")) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

// labelEscaper escapes a label value as the text format asks.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
