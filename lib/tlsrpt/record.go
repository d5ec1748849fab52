// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for gw: gw-send
// records the result of each session with a destination that has a
// policy (DANE's TLSA records, MTA-STS), one JSON line a result in the
// instance's state/send/tlsrpt/<day>.jsonl; gw-tlsrpt turns a day's results
// into one report a policy domain and mails it to the domain's rua.
package tlsrpt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gw/lib/trustpath"
)

// Policy types (RFC 8460 4.3).
const (
	PolicyTLSA = "tlsa"
	PolicySTS  = "sts"
	NoPolicy   = "no-policy-found"
)

// Result types of failures (RFC 8460 4.3).
const (
	StartTLSNotSupported = "starttls-not-supported"
	CertHostMismatch     = "certificate-host-mismatch"
	CertExpired          = "certificate-expired"
	CertNotTrusted       = "certificate-not-trusted"
	ValidationFailure    = "validation-failure"
	TLSAInvalid          = "tlsa-invalid"
	DNSSECInvalid        = "dnssec-invalid"
	STSPolicyFetchError  = "sts-policy-fetch-error"
	STSPolicyInvalid     = "sts-policy-invalid"
	STSWebPKIInvalid     = "sts-webpki-invalid"
)

// Result is one session's outcome, as recorded.
type Result struct {
	Time         int64    `json:"time"` // unix seconds
	PolicyType   string   `json:"policy_type"`
	PolicyDomain string   `json:"policy_domain"`
	PolicyString []string `json:"policy_string,omitempty"`
	MXHost       string   `json:"mx_host,omitempty"`
	ReceivingIP  string   `json:"receiving_ip,omitempty"`
	Success      bool     `json:"success"`
	ResultType   string   `json:"result_type,omitempty"`
	Reason       string   `json:"reason,omitempty"`
}

// Recorder appends results to the day's file.
type Recorder struct {
	Dir string // state/send/tlsrpt
	mu  sync.Mutex
}

// Day is the file name stem of t's UTC day.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Record appends r, one line with one write. A failure to record is
// not a failure to deliver: it is returned for a log line only.
func (rc *Recorder) Record(r Result) error {
	if rc == nil || rc.Dir == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := os.MkdirAll(rc.Dir, 0o750); err != nil {
		return err
	}
	f, err := openDay(filepath.Join(rc.Dir, Day(time.Unix(r.Time, 0))+".jsonl"))
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// openDay opens the day's file for appending, made if missing, but never
// through a link, nor a file with other names or of another owner: the
// directory is below state/, which another daemon's user owns, and a
// link there to a file of the queue would have gw-send append to its own
// journal or a message.
func openDay(path string) (*os.File, error) {
	euid := os.Geteuid()
	return trustpath.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640, fmt.Sprintf("not by this process's uid %d", euid), euid)
}
