package smtpd

import (
	"bytes"
)

// markField is the mark gw puts on a message it quarantines by tagging
// (DMARC with control/dmarcquarantine "tag", a milter's quarantine): the
// inside servers' filters act on it as the gateway's verdict.
const markField = "X-Gw-Quarantine"

// removeMarks takes every X-Gw-Quarantine field, with its folded lines,
// out of a stored message's header and says how many it took. A client
// that is not a gw instance (GW_PEER) has no say in the gateway's
// verdicts: left in, a sender's own mark would be read inside as the
// gateway's, as a forged Authentication-Results would (gw-auth(5)).
func removeMarks(msg []byte) ([]byte, int) {
	out := make([]byte, 0, len(msg))
	removed := 0
	dropping := false
	rest := msg
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			// the empty line: the body follows untouched
			out = append(out, line...)
			return append(out, rest...), removed
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !dropping {
				out = append(out, line...)
			}
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		dropping = ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte(markField))
		if dropping {
			removed++
			continue
		}
		out = append(out, line...)
	}
	return out, removed
}
