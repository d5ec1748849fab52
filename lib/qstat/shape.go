package qstat

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"gw/lib/queue"
)

// shapeBuckets are qshape's default age buckets, in minutes: a count goes
// in the first bucket its age is below, or in "1280+".
var shapeBuckets = []int{5, 10, 20, 40, 80, 160, 320, 640, 1280}

// ShapeBy says what Shape counts.
type ShapeBy int

// What Shape counts.
const (
	ByRecipient ShapeBy = iota // pending recipients, by recipient domain (qshape)
	BySender                   // messages with a pending recipient, by sender domain (qshape -s)
)

// Shape writes qshape's table: one row a domain, the most loaded first,
// after a TOTAL row; columns T (the row's total) and the counts by age
// since arrival as of now. Held messages are left out, as qshape leaves
// out the hold queue by default: they wait for the administrator, not for
// a destination. With several reports each gets its own table, after a
// line "instance: NAME".
func Shape(w io.Writer, reps []Report, now time.Time, by ShapeBy) error {
	bw := bufio.NewWriter(w)
	for i, r := range reps {
		if len(reps) > 1 {
			if i > 0 {
				bw.WriteString("\n")
			}
			bw.WriteString("instance: " + safe(r.Label()) + "\n")
		}
		if r.Err == nil {
			writeShape(bw, shapeRows(r.Messages, now, by))
		}
	}
	return bw.Flush()
}

// shapeRow is one domain's counts: [0] is the total, then one a bucket.
type shapeRow struct {
	name   string
	counts []int
}

func shapeRows(msgs []*queue.Message, now time.Time, by ShapeBy) []shapeRow {
	total := shapeRow{name: "TOTAL", counts: make([]int, len(shapeBuckets)+2)}
	rows := map[string]*shapeRow{}
	add := func(domain string, age time.Duration) {
		row := rows[domain]
		if row == nil {
			row = &shapeRow{name: domain, counts: make([]int, len(total.counts))}
			rows[domain] = row
		}
		b := 1 + sort.SearchInts(shapeBuckets, int(age/time.Minute)+1)
		row.counts[0]++
		row.counts[b]++
		total.counts[0]++
		total.counts[b]++
	}
	for _, m := range msgs {
		if m.Held {
			continue
		}
		age := now.Sub(m.Arrival)
		if age < 0 {
			age = 0 // the clock stepped back: count it as new
		}
		for _, rc := range m.Recipients {
			if rc.State != queue.Pending {
				continue
			}
			if by == BySender {
				add(senderDomain(m.Sender), age)
				break
			}
			add(shapeName(domainOf(rc.Address)), age)
		}
	}
	out := make([]shapeRow, 0, len(rows)+1)
	out = append(out, total)
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out[1:], func(i, j int) bool {
		a, b := out[1+i], out[1+j]
		if a.counts[0] != b.counts[0] {
			return a.counts[0] > b.counts[0]
		}
		return a.name < b.name
	})
	return out
}

// senderDomain names a sender's row; bounces get qshape's MAILER-DAEMON.
func senderDomain(sender string) string {
	if sender == "" || sender == "#@[]" {
		return "MAILER-DAEMON"
	}
	return shapeName(domainOf(sender))
}

func shapeName(domain string) string {
	if domain == "" {
		return "(none)"
	}
	return safe(domain)
}

// writeShape right-aligns every column to its widest cell, as qshape does
// with its fixed widths, but without cutting long domain names.
func writeShape(w *bufio.Writer, rows []shapeRow) {
	head := []string{"T"}
	for _, b := range shapeBuckets {
		head = append(head, strconv.Itoa(b))
	}
	head = append(head, strconv.Itoa(shapeBuckets[len(shapeBuckets)-1])+"+")
	nameW := 0
	widths := make([]int, len(head))
	for i, h := range head {
		widths[i] = len(h)
	}
	for _, r := range rows {
		nameW = max(nameW, len(r.name))
		for i, n := range r.counts {
			widths[i] = max(widths[i], len(strconv.Itoa(n)))
		}
	}
	pad := func(s string, n int) {
		w.WriteString(strings.Repeat(" ", n-len(s)))
		w.WriteString(s)
	}
	pad("", nameW)
	for i, h := range head {
		w.WriteByte(' ')
		pad(h, widths[i])
	}
	w.WriteByte('\n')
	for _, r := range rows {
		pad(r.name, nameW)
		for i, n := range r.counts {
			w.WriteByte(' ')
			pad(strconv.Itoa(n), widths[i])
		}
		w.WriteByte('\n')
	}
}
