// Package milter runs a face's list of Sendmail milters (protocol version
// 6) along an SMTP session, as Postfix does: each milter hears MAIL and
// each RCPT when the client gives them (the connection and HELO replayed
// at the first MAIL), so it can refuse one recipient alone, and the
// message at its end, in turn, its modifications applied to the message
// and envelope the next milter sees. A milter that cannot be reached, is
// too slow or answers nonsense gets its default action, as Postfix's
// milter_default_action.
package milter

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Failure is what a milter's failure does to the message.
type Failure int

// The default actions, named as in control/milters.
const (
	FailTempfail Failure = iota // 451: the client retries (the default)
	FailAccept                  // the milter is skipped; the others still run
	FailReject                  // 550: the message is refused
)

func (f Failure) String() string {
	switch f {
	case FailAccept:
		return "accept"
	case FailReject:
		return "reject"
	}
	return "tempfail"
}

// DefaultTimeout bounds each read and write to a milter, and the
// connection, when control/milters names none.
const DefaultTimeout = 10 * time.Second

// Milter is one line of control/milters.
type Milter struct {
	Name    string
	Network string // "unix" or "tcp"
	Address string
	Timeout time.Duration
	Default Failure
}

// Parse reads control/milters: one milter a line, in the order they
// run,
//
//	name socket [timeout=DURATION] [default=accept|tempfail|reject]
//
// where socket is unix:/path or inet:port@host. Blank lines and lines
// starting with # are ignored. An error names the line.
func Parse(text string) ([]Milter, error) {
	var list []Milter
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("line %d: milter %q named twice", n, m.Name)
		}
		seen[m.Name] = true
		list = append(list, m)
	}
	return list, sc.Err()
}

func parseLine(line string) (Milter, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return Milter{}, errors.New("want: name socket [timeout=DURATION] [default=ACTION]")
	}
	m := Milter{Name: f[0], Timeout: DefaultTimeout}
	if !validName(m.Name) {
		return m, fmt.Errorf("bad name %q: letters, digits, - _ . only", m.Name)
	}
	var err error
	if m.Network, m.Address, err = ParseSocket(f[1]); err != nil {
		return m, err
	}
	for _, opt := range f[2:] {
		k, v, ok := strings.Cut(opt, "=")
		switch {
		case !ok:
			return m, fmt.Errorf("%q: want key=value", opt)
		case k == "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > 10*time.Minute {
				return m, fmt.Errorf("timeout %q: a duration over 0 and up to 10m", v)
			}
			m.Timeout = d
		case k == "default":
			switch v {
			case "accept":
				m.Default = FailAccept
			case "tempfail":
				m.Default = FailTempfail
			case "reject":
				m.Default = FailReject
			default:
				return m, fmt.Errorf("default %q: accept, tempfail or reject", v)
			}
		default:
			return m, fmt.Errorf("unknown option %q", k)
		}
	}
	return m, nil
}

// ParseSocket reads a milter's socket in Sendmail's and Postfix's
// notation: unix:/path (or local:/path) and inet:port@host (inet6 too).
func ParseSocket(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
	case kind == "unix" || kind == "local":
		if !filepath.IsAbs(rest) {
			return "", "", fmt.Errorf("socket %q: a unix socket's path is absolute", s)
		}
		return "unix", rest, nil
	case kind == "inet" || kind == "inet6":
		port, host, ok := strings.Cut(rest, "@")
		n, err := strconv.Atoi(port)
		if !ok || host == "" || err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("socket %q: want inet:port@host", s)
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		return "tcp", netJoin(host, port), nil
	}
	return "", "", fmt.Errorf("socket %q: want unix:/path or inet:port@host", s)
}

func netJoin(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Load reads dir/milters; a missing file is no milters.
func Load(dir string) ([]Milter, error) {
	b, err := os.ReadFile(filepath.Join(dir, "milters"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control/milters: %w", err)
	}
	list, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("control/milters: %w", err)
	}
	return list, nil
}

// Select picks the milters a client's MILTERS variable names (a
// tcprules assignment: comma-separated names, empty for none); without
// the variable, all of them. A name not in the list is an error, so a
// typo in the rules does not silently skip a filter.
func Select(list []Milter, names string, set bool) ([]Milter, error) {
	if !set {
		return list, nil
	}
	var out []Milter
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, m := range list {
			if m.Name == n {
				out, found = append(out, m), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("MILTERS names %q, which control/milters does not list", n)
		}
	}
	return out, nil
}
