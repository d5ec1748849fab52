package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/trustpath"
)

// Resolver is the part of gw's resolver (lib/dns) the fetcher uses: the
// TXT record, and the address of the policy host.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Fetcher finds a domain's policy: TXT record, cache, HTTPS.
type Fetcher struct {
	DNS Resolver
	// Roots are the CAs the policy host's certificate must chain to
	// (control/tlscafile), nil for the system's.
	Roots *x509.CertPool
	// Port is the HTTPS port, 443. A test sets it through the
	// environment variable GW_MTASTS_PORT (see PortFromEnv); nothing
	// else should.
	Port    int
	Timeout time.Duration // the whole fetch; RFC 8461 3.3 suggests a minute at most
	Dir     string        // the cache: one file a domain
	Now     func() time.Time
}

// PortFromEnv is 443, or GW_MTASTS_PORT: a knob for tests, whose HTTPS
// server cannot listen on 443. Never set it in production: a policy
// fetched from another port is not the domain's.
func PortFromEnv() int {
	if n, err := strconv.Atoi(os.Getenv("GW_MTASTS_PORT")); err == nil && n > 0 && n < 65536 {
		return n
	}
	return 443
}

// cached is a policy as the cache keeps it.
type cached struct {
	ID      string `json:"id"`
	Fetched int64  `json:"fetched"` // unix seconds
	Body    string `json:"policy"`
}

// Lookup returns domain's policy, nil when it has none. fetchErr is a
// failure to get a policy the TXT record announced (a TLS-RPT
// sts-policy-fetch-error); a still valid cached policy is used then
// (RFC 8461 5.1). The cache follows the TXT id: the same id and an
// unexpired policy, no fetch; another id, a fetch.
func (f *Fetcher) Lookup(ctx context.Context, domain string) (p *Policy, fetchErr error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := f.Now()
	c, cp := f.readCache(domain)
	valid := cp != nil && now.Unix() < c.Fetched+cp.MaxAge
	id, announced := f.txt(ctx, domain)
	if !announced {
		if valid {
			return cp, nil
		}
		return nil, nil
	}
	if valid && c.ID == id {
		return cp, nil
	}
	body, err := f.fetch(ctx, domain)
	if err == nil {
		var np *Policy
		if np, err = Parse(body); err == nil {
			f.writeCache(domain, cached{ID: id, Fetched: now.Unix(), Body: body})
			return np, nil
		}
	}
	err = fmt.Errorf("MTA-STS policy of %s: %w", domain, err)
	if valid {
		return cp, err
	}
	return nil, err
}

// txt reads the _mta-sts record: exactly one STSv1 record announces a
// policy (RFC 8461 3.1); none, several, or no answer announce none.
func (f *Fetcher) txt(ctx context.Context, domain string) (string, bool) {
	recs, err := f.DNS.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", false
	}
	var ids []string
	for _, r := range recs {
		if strings.HasPrefix(r, "v=STSv1") {
			id, ok := ParseTXT(r)
			if !ok {
				return "", false
			}
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return "", false
	}
	return ids[0], true
}

// fetch gets https://mta-sts.<domain>/.well-known/mta-sts.txt: the
// certificate verified for that name, no redirects, 200 and text/plain
// only, at most MaxSize bytes, within Timeout.
func (f *Fetcher) fetch(ctx context.Context, domain string) (string, error) {
	host := "mta-sts." + domain
	port := f.Port
	if port == 0 {
		port = 443
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		addrs, err := f.DNS.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%s has no address", host)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort(addrs[0].Unmap().String(), strconv.Itoa(port)))
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: f.Roots, ServerName: host},
			Proxy: nil, DisableKeepAlives: true, ResponseHeaderTimeout: timeout},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirected: RFC 8461 3.3 forbids following it")
		},
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "text/plain") {
		return "", fmt.Errorf("content type %q, want text/plain", ct)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > MaxSize {
		return "", errors.New("policy over 64 KiB")
	}
	return string(b), nil
}

// file is the cache file of domain; "" for a name unfit for a file name.
func (f *Fetcher) file(domain string) string {
	if f.Dir == "" || domain == "" || strings.ContainsAny(domain, "/\\\x00") || strings.HasPrefix(domain, ".") {
		return ""
	}
	return filepath.Join(f.Dir, domain+".json")
}

// readCache reads what is cached for domain; what the cache holds is
// checked again (a file anyone could have written).
func (f *Fetcher) readCache(domain string) (cached, *Policy) {
	var c cached
	name := f.file(domain)
	if name == "" {
		return c, nil
	}
	b, err := readCacheFile(name)
	if err != nil || len(b) > 2*MaxSize || json.Unmarshal(b, &c) != nil {
		return c, nil
	}
	p, err := Parse(c.Body)
	if err != nil {
		return c, nil
	}
	return c, p
}

// readCacheFile reads a cache file that this process wrote: not through a
// link, a regular file with one name, owned by this process's user.
// Another daemon's user owns state/, above the cache.
func readCacheFile(name string) ([]byte, error) {
	f, err := trustpath.OpenFile(name, os.O_RDONLY, 0, "not this user's", os.Geteuid())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 2*MaxSize+1))
}

// writeCache replaces domain's cache file whole (write, then rename).
func (f *Fetcher) writeCache(domain string, c cached) {
	name := f.file(domain)
	if name == "" {
		return
	}
	os.MkdirAll(f.Dir, 0o750)
	b, _ := json.Marshal(c)
	tmp := name + ".tmp"
	// Made anew, never opened where it stands: a link at the temp name
	// (the cache lies below state/, another daemon's user's) would have
	// gw-send overwrite whatever it points to, a file of the queue say.
	os.Remove(tmp)
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return
	}
	_, err = w.Write(b)
	if cerr := w.Close(); err == nil && cerr == nil {
		os.Rename(tmp, name)
		return
	}
	os.Remove(tmp)
}
