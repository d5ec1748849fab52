// Package dmarcreport keeps DMARC results for aggregate reports (RFC 7489
// §7.2) and writes the reports: results are counted per day, policy
// domain and kind of outcome in a bbolt file in the instance's state/,
// and each finished day becomes one gzip XML report a domain, mailed to
// the domain's rua addresses that pass the external-destination check
// (§7.1).
package dmarcreport

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/spf"
	"gw/lib/trustpath"
)

// Row is what a report says of a group of messages: the source, the
// identities, the results and the disposition. Its JSON form is the key
// of the count on disk; field names are explicit so that it keeps its
// meaning across releases.
type Row struct {
	SourceIP     string     `json:"source_ip"`
	HeaderFrom   string     `json:"header_from"`
	EnvelopeFrom string     `json:"envelope_from"`
	Disposition  string     `json:"disposition"` // none, quarantine, reject
	DKIM         string     `json:"dkim"`        // aligned DKIM: pass or fail
	SPF          string     `json:"spf"`         // aligned SPF: pass or fail
	Reason       string     `json:"reason,omitempty"`
	DKIMResults  []DKIMAuth `json:"dkim_results,omitempty"`
	SPFResult    SPFAuth    `json:"spf_result"`
	Published    Published  `json:"published"`
	RUA          []string   `json:"rua"`
}

// DKIMAuth is one signature's result.
type DKIMAuth struct {
	Domain   string `json:"domain" xml:"domain"`
	Selector string `json:"selector" xml:"selector"`
	Result   string `json:"result" xml:"result"`
}

// SPFAuth is the MAIL FROM identity's SPF result.
type SPFAuth struct {
	Domain string `json:"domain"`
	Result string `json:"result"`
}

// Published is the policy as the domain published it.
type Published struct {
	Domain string `json:"domain"`
	ADKIM  string `json:"adkim"`
	ASPF   string `json:"aspf"`
	P      string `json:"p"`
	SP     string `json:"sp"`
	Pct    int    `json:"pct"`
}

// RowOf is the row of one message: its DMARC evaluation, its SPF and DKIM
// results and what the gateway did. It reports false for a message no
// report is owed for: no DMARC record, or a record without rua=.
func RowOf(client string, r dmarc.Result, mailFrom spf.Result, sigs []dkim.Result, action dmarc.Action, reason string) (Row, bool) {
	if r.Record == nil || len(r.RUA) == 0 || (r.Value != dmarc.Pass && r.Value != dmarc.Fail) {
		return Row{}, false
	}
	row := Row{SourceIP: client, HeaderFrom: r.From, EnvelopeFrom: mailFrom.Domain,
		Disposition: map[dmarc.Action]string{dmarc.Accept: "none", dmarc.Quarantine: "quarantine", dmarc.Reject: "reject"}[action],
		DKIM:        passFail(r.DKIMAligned), SPF: passFail(r.SPFAligned),
		SPFResult: SPFAuth{Domain: mailFrom.Domain, Result: mailFrom.Value}, RUA: r.RUA}
	if r.Value == dmarc.Fail && action == dmarc.Accept && strings.Contains(reason, "forwarder") {
		row.Reason = "trusted_forwarder"
	}
	for _, s := range sigs {
		row.DKIMResults = append(row.DKIMResults, DKIMAuth{Domain: s.Domain, Selector: s.Selector, Result: s.Value})
	}
	rec := r.Record
	row.Published = Published{Domain: r.RecordAt, ADKIM: orR(string(rec.DKIMAlignment)), ASPF: orR(string(rec.SPFAlignment)),
		P: string(rec.Policy), SP: string(rec.SubdomainPolicy), Pct: 100}
	if rec.Percent != nil {
		row.Published.Pct = *rec.Percent
	}
	if row.Published.SP == "" {
		row.Published.SP = row.Published.P
	}
	return row, true
}

func passFail(b bool) string {
	if b {
		return "pass"
	}
	return "fail"
}

func orR(s string) string {
	if s == "" {
		return "r"
	}
	return s
}

// Store is the results file, state/smtpd/dmarc.db by convention.
type Store struct{ db *bbolt.DB }

// Open opens (or creates) the results file.
func Open(path string) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{OpenFile: trustpath.OpenOwned, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// bucket names a day's results for one policy domain: "2026-12-01 example.com".
func bucket(day time.Time, domain string) []byte {
	return []byte(day.UTC().Format("2006-01-02") + " " + domain)
}

// Record counts one message under the UTC day of now.
func (s *Store) Record(now time.Time, row Row) error {
	key, err := json.Marshal(row)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket(now, row.Published.Domain))
		if err != nil {
			return err
		}
		var n uint64
		if v := b.Get(key); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return b.Put(key, binary.BigEndian.AppendUint64(nil, n+1))
	})
}

// Period is one report's worth of results: a day and a policy domain.
type Period struct {
	Day    time.Time // 00:00 UTC
	Domain string
}

// Due lists the periods of days before now's, oldest first: those whose
// counts can no longer grow.
func (s *Store) Due(now time.Time) ([]Period, error) {
	today := now.UTC().Format("2006-01-02")
	var out []Period
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			day, domain, ok := strings.Cut(string(name), " ")
			t, err := time.Parse("2006-01-02", day)
			if !ok || err != nil {
				return fmt.Errorf("bucket %q is not a day and a domain", name)
			}
			if day < today {
				out = append(out, Period{t, domain})
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Day.Before(out[j].Day) })
	return out, err
}

// Counted is a row with the number of messages it stands for.
type Counted struct {
	Row   Row
	Count uint64
}

// Rows returns a period's rows.
func (s *Store) Rows(p Period) ([]Counted, error) {
	var out []Counted
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket(p.Day, p.Domain))
		if b == nil {
			return errors.New("no such period")
		}
		return b.ForEach(func(k, v []byte) error {
			var c Counted
			if err := json.Unmarshal(k, &c.Row); err != nil || len(v) != 8 {
				return fmt.Errorf("damaged row in %s %s", p.Day.Format("2006-01-02"), p.Domain)
			}
			c.Count = binary.BigEndian.Uint64(v)
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// Done removes a period once its reports are sent.
func (s *Store) Done(p Period) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.DeleteBucket(bucket(p.Day, p.Domain))
	})
}

// File records into the results file at Path, opening it for each
// message: bbolt locks a file for as long as it is open, and under
// tcpserver every session is a process of its own, so a listener must not
// hold it across a session.
type File struct{ Path string }

// Record counts one message (Store.Record).
func (f File) Record(now time.Time, row Row) error {
	s, err := Open(f.Path)
	if err != nil {
		return err
	}
	if err := s.Record(now, row); err != nil {
		s.Close()
		return err
	}
	return s.Close()
}
