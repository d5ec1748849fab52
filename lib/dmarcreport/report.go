package dmarcreport

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"gw/lib/dmarc"
	"gw/lib/dns"
)

// feedback is the aggregate report, RFC 7489 Appendix C.
type feedback struct {
	XMLName  xml.Name `xml:"feedback"`
	Metadata struct {
		OrgName   string `xml:"org_name"`
		Email     string `xml:"email"`
		ReportID  string `xml:"report_id"`
		DateRange struct {
			Begin int64 `xml:"begin"`
			End   int64 `xml:"end"`
		} `xml:"date_range"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
		ADKIM  string `xml:"adkim"`
		ASPF   string `xml:"aspf"`
		P      string `xml:"p"`
		SP     string `xml:"sp"`
		Pct    int    `xml:"pct"`
	} `xml:"policy_published"`
	Records []record `xml:"record"`
}

type record struct {
	Row struct {
		SourceIP  string `xml:"source_ip"`
		Count     uint64 `xml:"count"`
		Evaluated struct {
			Disposition string `xml:"disposition"`
			DKIM        string `xml:"dkim"`
			SPF         string `xml:"spf"`
			Reason      *struct {
				Type string `xml:"type"`
			} `xml:"reason,omitempty"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers struct {
		HeaderFrom   string `xml:"header_from"`
		EnvelopeFrom string `xml:"envelope_from,omitempty"`
	} `xml:"identifiers"`
	Auth struct {
		DKIM []DKIMAuth `xml:"dkim"`
		SPF  struct {
			Domain string `xml:"domain"`
			Scope  string `xml:"scope"`
			Result string `xml:"result"`
		} `xml:"spf"`
	} `xml:"auth_results"`
}

// Reporter names who reports.
type Reporter struct {
	Org   string // the reporting organisation: control/me
	Email string // its address, the reports' sender
}

// Report is one period's report, ready to mail.
type Report struct {
	ID       string
	Filename string // receiver!policy-domain!begin!end.xml.gz (§7.2.1.1)
	Gzip     []byte
	RUA      []string
}

// Build makes a period's report from its rows.
func (rp Reporter) Build(p Period, rows []Counted) (*Report, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("no results for %s", p.Domain)
	}
	var f feedback
	begin, end := p.Day.Unix(), p.Day.Add(24*time.Hour).Unix()-1
	sum := sha256.Sum256([]byte(rp.Org + p.Domain + p.Day.String()))
	id := p.Day.Format("20060102") + "." + hex.EncodeToString(sum[:6]) + "@" + rp.Org
	f.Metadata.OrgName, f.Metadata.Email, f.Metadata.ReportID = rp.Org, rp.Email, id
	f.Metadata.DateRange.Begin, f.Metadata.DateRange.End = begin, end
	// the policy as last seen: rows are in key order, any is as good
	pub := rows[len(rows)-1].Row.Published
	f.Policy.Domain, f.Policy.ADKIM, f.Policy.ASPF, f.Policy.P, f.Policy.SP, f.Policy.Pct = pub.Domain, pub.ADKIM, pub.ASPF, pub.P, pub.SP, pub.Pct
	rua := map[string]bool{}
	var ruaList []string
	for _, c := range rows {
		var rec record
		rec.Row.SourceIP, rec.Row.Count = c.Row.SourceIP, c.Count
		rec.Row.Evaluated.Disposition, rec.Row.Evaluated.DKIM, rec.Row.Evaluated.SPF = c.Row.Disposition, c.Row.DKIM, c.Row.SPF
		if c.Row.Reason != "" {
			rec.Row.Evaluated.Reason = &struct {
				Type string `xml:"type"`
			}{c.Row.Reason}
		}
		rec.Identifiers.HeaderFrom, rec.Identifiers.EnvelopeFrom = c.Row.HeaderFrom, c.Row.EnvelopeFrom
		rec.Auth.DKIM = c.Row.DKIMResults
		rec.Auth.SPF.Domain, rec.Auth.SPF.Scope, rec.Auth.SPF.Result = c.Row.SPFResult.Domain, "mfrom", c.Row.SPFResult.Result
		f.Records = append(f.Records, rec)
		for _, u := range c.Row.RUA {
			if !rua[u] {
				rua[u] = true
				ruaList = append(ruaList, u)
			}
		}
	}
	x, err := xml.MarshalIndent(f, "", " ")
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(xml.Header))
	w.Write(x)
	if err := w.Close(); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%s!%s!%d!%d.xml.gz", rp.Org, p.Domain, begin, end)
	return &Report{ID: id, Filename: name, Gzip: gz.Bytes(), RUA: ruaList}, nil
}

// Destination is a rua address and whether it may be sent to.
type Destination struct {
	Address string
	MaxSize int64  // the !size suffix in bytes; 0 for none
	Refused string // why not: a URI that is not mailto:, a failed §7.1 check
	Retry   bool   // the check could not be made now: try at the next run
}

// Destinations reads rua URIs and makes RFC 7489 §7.1's check for those
// outside the policy domain's organisation: the report domain must
// publish <policy-domain>._report._dmarc.<report-domain> with v=DMARC1,
// or a domain could have its reports mailed to anyone it names.
func Destinations(ctx context.Context, r *dns.Resolver, policyDomain string, rua []string) []Destination {
	var out []Destination
	for _, u := range rua {
		d := parseURI(u)
		if d.Refused == "" {
			d.Refused, d.Retry = external(ctx, r, policyDomain, d.Address)
		}
		out = append(out, d)
	}
	return out
}

func parseURI(u string) Destination {
	u = strings.TrimSpace(u)
	if len(u) < 7 || !strings.EqualFold(u[:7], "mailto:") {
		return Destination{Address: u, Refused: "not a mailto: URI"}
	}
	addr, size, _ := strings.Cut(u[7:], "!")
	d := Destination{Address: addr}
	if size != "" {
		d.MaxSize = parseSize(size)
	}
	if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || !strings.Contains(addr, "@") {
		d.Refused = "not an address"
	}
	return d
}

func parseSize(s string) int64 {
	mult := map[byte]int64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}
	var n int64
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9' && n < 1<<40; i++ {
		n = n*10 + int64(s[i]-'0')
	}
	if i < len(s) {
		if m, ok := mult[s[i]|0x20]; ok {
			if n > (1<<62)/m {
				return 1 << 62 // no size limit anyone could reach
			}
			n *= m
		}
	}
	return n
}

func external(ctx context.Context, r *dns.Resolver, policyDomain, addr string) (string, bool) {
	domain := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	if dmarc.OrgDomain(domain) == dmarc.OrgDomain(policyDomain) {
		return "", false
	}
	name := policyDomain + "._report._dmarc." + domain
	txts, err := r.LookupTXT(ctx, name)
	if dns.Temporary(err) {
		return "§7.1 check of " + name + ": " + err.Error(), true
	}
	for _, t := range txts {
		if strings.HasPrefix(t, "v=DMARC1") {
			return "", false
		}
	}
	return name + " does not authorise reports for " + policyDomain, false
}

// Message is the mail carrying a report to one address, LF-ended as the
// queue keeps messages.
func (rp Reporter) Message(rep *Report, policyDomain, to string, now time.Time) []byte {
	boundary := "gw-dmarc-" + strings.NewReplacer("@", ".", "!", ".").Replace(rep.ID)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\nTo: %s\nDate: %s\nMessage-ID: <%s>\n", rp.Email, to, now.UTC().Format(time.RFC1123Z), rep.ID)
	fmt.Fprintf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\n", policyDomain, rp.Org, rep.ID)
	fmt.Fprintf(&b, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"%s\"\n\n", boundary)
	fmt.Fprintf(&b, "--%s\nContent-Type: text/plain; charset=us-ascii\n\nDMARC aggregate report for %s from %s.\n\n", boundary, policyDomain, rp.Org)
	fmt.Fprintf(&b, "--%s\nContent-Type: application/gzip\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"%s\"\n\n", boundary, rep.Filename)
	enc := base64.StdEncoding.EncodeToString(rep.Gzip)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n--" + boundary + "--\n")
	return []byte(b.String())
}
