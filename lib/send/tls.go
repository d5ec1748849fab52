package send

import "gw/lib/deliver"

// tlsFailed logs each TLS failure of j's sessions: opportunistic TLS
// falls back to the clear by itself, and the log is where an admin sees
// that it did, and why (a broken server, or someone in the path).
func (s *Sender) tlsFailed(j *job) func(*deliver.TLSFailure) {
	return func(f *deliver.TLSFailure) {
		s.log.Warning("tls_failed", "qid", j.id, "host", f.Host, "stage", f.Stage, "reason", f.Reason)
	}
}
