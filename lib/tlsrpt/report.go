package tlsrpt

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// MaxLine bounds a line of the results file read back: the file is
// gw-send's, but read as if from anyone.
const MaxLine = 64 * 1024

// Read reads a day's results file; lines that are not a result are
// counted and skipped.
func Read(r io.Reader) (results []Result, bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	for sc.Scan() {
		var res Result
		if json.Unmarshal(sc.Bytes(), &res) != nil || res.PolicyDomain == "" || res.PolicyType == "" {
			bad++
			continue
		}
		results = append(results, res)
	}
	return results, bad, sc.Err()
}

// Report is an RFC 8460 4 report, in its JSON field names.
type Report struct {
	Organization string        `json:"organization-name"`
	DateRange    DateRange     `json:"date-range"`
	Contact      string        `json:"contact-info"`
	ReportID     string        `json:"report-id"`
	Policies     []PolicyBlock `json:"policies"`
}

type DateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

type PolicyBlock struct {
	Policy  PolicyDesc `json:"policy"`
	Summary Summary    `json:"summary"`
	Details []Detail   `json:"failure-details,omitempty"`
}

type PolicyDesc struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

type Summary struct {
	Success int `json:"total-successful-session-count"`
	Failure int `json:"total-failure-session-count"`
}

type Detail struct {
	ResultType  string `json:"result-type"`
	ReceivingMX string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string `json:"receiving-ip,omitempty"`
	Count       int    `json:"failed-session-count"`
	Reason      string `json:"failure-reason-code,omitempty"`
}

// Build makes the reports of one day, one a policy domain, keyed by the
// domain: results grouped by policy type, failures by what failed.
func Build(day time.Time, org, contact string, results []Result) map[string]*Report {
	start := day.UTC().Truncate(24 * time.Hour)
	out := map[string]*Report{}
	blocks := map[[2]string]*PolicyBlock{}
	details := map[[2]string]map[Detail]int{}
	for _, r := range results {
		dom := strings.ToLower(r.PolicyDomain)
		rep, ok := out[dom]
		if !ok {
			rep = &Report{Organization: org, Contact: contact,
				DateRange: DateRange{Start: start.Format(time.RFC3339), End: start.Add(24*time.Hour - time.Second).Format(time.RFC3339)},
				ReportID:  fmt.Sprintf("%s_%s@%s", start.Format("2006-01-02"), dom, org)}
			out[dom] = rep
		}
		k := [2]string{dom, r.PolicyType}
		b, ok := blocks[k]
		if !ok {
			b = &PolicyBlock{Policy: PolicyDesc{Type: r.PolicyType, String: r.PolicyString, Domain: dom}}
			blocks[k] = b
			details[k] = map[Detail]int{}
		}
		if r.MXHost != "" && !contains(b.Policy.MXHost, r.MXHost) && r.PolicyType == PolicySTS {
			b.Policy.MXHost = append(b.Policy.MXHost, r.MXHost)
		}
		if r.Success {
			b.Summary.Success++
			continue
		}
		b.Summary.Failure++
		details[k][Detail{ResultType: r.ResultType, ReceivingMX: r.MXHost, ReceivingIP: r.ReceivingIP, Reason: r.Reason}]++
	}
	keys := make([][2]string, 0, len(blocks))
	for k := range blocks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
	for _, k := range keys {
		b := blocks[k]
		for d, n := range details[k] {
			d.Count = n
			b.Details = append(b.Details, d)
		}
		sort.Slice(b.Details, func(i, j int) bool {
			return b.Details[i].ResultType+b.Details[i].ReceivingMX < b.Details[j].ResultType+b.Details[j].ReceivingMX
		})
		out[k[0]].Policies = append(out[k[0]].Policies, *b)
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ParseRUA reads a _smtp._tls TXT record (RFC 8460 3) and returns its
// mailto: addresses; https: ones gw does not post to.
func ParseRUA(txt string) ([]string, bool) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return nil, false
	}
	var out []string
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k != "rua" {
			continue
		}
		for _, u := range strings.Split(v, ",") {
			if a, ok := strings.CutPrefix(strings.TrimSpace(u), "mailto:"); ok && strings.Count(a, "@") == 1 && !strings.ContainsAny(a, " \t\n<>") {
				out = append(out, a)
			}
		}
	}
	return out, true
}

// Message is the report mailed (RFC 8460 5.3): multipart/report with a
// human part and the gzipped JSON, named
// submitter!policy-domain!begin!end.json.gz.
func Message(rep *Report, domain, from, to string, now time.Time) ([]byte, error) {
	js, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	begin, _ := time.Parse(time.RFC3339, rep.DateRange.Start)
	end, _ := time.Parse(time.RFC3339, rep.DateRange.End)
	name := fmt.Sprintf("%s!%s!%d!%d.json.gz", rep.Organization, domain, begin.Unix(), end.Unix())
	boundary := fmt.Sprintf("tlsrpt-%d", now.UnixNano())
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\nTo: %s\nDate: %s\n", from, to, now.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\n", domain, rep.Organization, rep.ReportID)
	fmt.Fprintf(&b, "TLS-Report-Domain: %s\nTLS-Report-Submitter: %s\n", domain, rep.Organization)
	fmt.Fprintf(&b, "Message-ID: <%s>\nMIME-Version: 1.0\n", rep.ReportID)
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=\"tlsrpt\";\n\tboundary=\"%s\"\n\n", boundary)
	fmt.Fprintf(&b, "--%s\nContent-Type: text/plain; charset=us-ascii\n\n", boundary)
	fmt.Fprintf(&b, "This is an aggregate TLS report from %s for %s.\n\n", rep.Organization, domain)
	fmt.Fprintf(&b, "--%s\nContent-Type: application/tlsrpt+gzip\nContent-Transfer-Encoding: base64\n", boundary)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\n\n", name)
	enc := base64.StdEncoding.EncodeToString(gz.Bytes())
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n--" + boundary + "--\n")
	return b.Bytes(), nil
}
