package qstat

import (
	"bufio"
	"fmt"
	"io"
)

// Summary writes qmail-qstat's two lines, exactly as qmail-qstat words
// them so that scripts written for it keep working, then one line a state:
//
//	messages in queue: 17
//	messages in queue but not yet preprocessed: 2
//	messages active: 10
//	messages deferred: 3
//	messages hold: 1
//	messages done: 1
//	recipients pending: 20
//	recipients delivered: 5
//	recipients failed: 1
//	bytes in queue: 123456
//	injections in progress: 0
//	problem files: 0
//
// "Not yet preprocessed" counts the incoming state. With several reports
// the lines above are the totals, and the same lines follow for each
// instance, prefixed by its name and ": ", so that grep finds either; an
// instance that could not be read has no lines rather than zeros.
//
// When any queue could not be read the totals are left out too: a total
// that silently skips a queue, or a lone unreadable queue shown as
// "messages in queue: 0", is the number a monitoring check trusts and
// must not get. The caller reports the error and exits 111.
func Summary(w io.Writer, reps []Report) error {
	bw := bufio.NewWriter(w)
	var total Counts
	each := make([]Counts, len(reps))
	whole := true
	for i, r := range reps {
		each[i] = Count(r)
		total.add(each[i])
		whole = whole && r.Err == nil
	}
	if whole {
		writeCounts(bw, "", total)
	}
	if len(reps) > 1 {
		for i, r := range reps {
			if r.Err == nil {
				writeCounts(bw, safe(r.Label())+": ", each[i])
			}
		}
	}
	return bw.Flush()
}

func writeCounts(w io.Writer, prefix string, c Counts) {
	fmt.Fprintf(w, "%smessages in queue: %d\n", prefix, c.Messages)
	fmt.Fprintf(w, "%smessages in queue but not yet preprocessed: %d\n", prefix, c.Msg[Incoming])
	for s := Active; s < msgStateCount; s++ {
		fmt.Fprintf(w, "%smessages %s: %d\n", prefix, s, c.Msg[s])
	}
	for _, s := range rcptStates {
		fmt.Fprintf(w, "%srecipients %s: %d\n", prefix, s, c.Rcpt[s])
	}
	fmt.Fprintf(w, "%sbytes in queue: %d\n", prefix, c.Bytes)
	fmt.Fprintf(w, "%sinjections in progress: %d\n", prefix, c.InProgress)
	fmt.Fprintf(w, "%sproblem files: %d\n", prefix, c.Problems)
}
